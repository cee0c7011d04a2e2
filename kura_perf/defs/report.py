"""The performance report as an asset: rebuilt from the metrics store (not from stage outputs), so it
has no upstream assets; the run-status sensor requests it after each successful benchmark run."""

import base64

from dagster import AssetExecutionContext, MaterializeResult, MetadataValue, asset

from kura_perf.defs.resources import KuraPerfResource
from kura_perf.report.build import build_report


@asset(group_name="reporting", kinds={"html"},
       description="data/reports/index.html: the proposal's tables filled with measured figures, scaling fits, "
                   "hardware matrix and guidance.")
def performance_report(context: AssetExecutionContext, kura_perf: KuraPerfResource) -> MaterializeResult:
    result = build_report(kura_perf.paths())
    metadata = {
        "path": MetadataValue.path(str(result.index_html)),
        "figures": MetadataValue.int(len(result.figures)),
        "headline": MetadataValue.md(result.headline_markdown or "_no runs recorded yet_"),
    }
    if result.main_figure is not None and result.main_figure.exists():
        encoded = base64.b64encode(result.main_figure.read_bytes()).decode()
        metadata["main_plot"] = MetadataValue.md(f"![scaling](data:image/png;base64,{encoded})")
    return MaterializeResult(metadata=metadata)
