"""Kura's usability as assets (group `kura_usability`): the checkpoint-format benchmark and the
error-clarity catalogue. Unpartitioned (each covers several scales or none); the work lives in
kura_perf/experiments/usability/, these bodies only call it and record the rows."""

import math

from dagster import (
    AssetExecutionContext,
    Config,
    MaterializeResult,
    MetadataValue,
    TableColumn,
    TableRecord,
    TableSchema,
    asset,
)

from kura_perf.defs.resources import KuraPerfResource
from kura_perf.experiments.usability.checkpoints import run_checkpoint_benchmark
from kura_perf.experiments.usability.error_clarity import run_error_catalogue
from kura_perf.store import write_records


class CheckpointFormatsConfig(Config):
    scales: list[str] = ["100", "1k"]
    formats: list[str] = ["jsonl", "parquet", "hf_datasets"]


def _table(rows: list[dict], columns: list[tuple[str, str]]) -> MetadataValue:
    """`rows` as a Dagster table of `columns` ((name, type): string, int, float)."""
    def cell(value, kind: str):
        if value is None or (isinstance(value, float) and math.isnan(value)):
            return None
        if kind == "int":
            return int(value)
        if kind == "float":
            return round(float(value), 4)
        return str(value)

    return MetadataValue.table([TableRecord({name: cell(r.get(name), kind) for name, kind in columns}) for r in rows],
                               schema=TableSchema(columns=[TableColumn(name, kind) for name, kind in columns]))


CHECKPOINT_COLUMNS = [("format", "string"), ("scale", "string"), ("kind", "string"), ("status", "string"),
                      ("write_s", "float"), ("read_s", "float"), ("bytes", "int"), ("write_peak_rss_mb", "float"),
                      ("read_peak_rss_mb", "float")]
GRADE_COLUMNS = [("case_id", "string"), ("outcome", "string"), ("error_type", "string"), ("score", "int"),
                 ("grade", "string")]


@asset(group_name="kura_usability", kinds={"python"},
       description="Write/reload time, bytes and peak memory of Kura's JSONL, Parquet and HF datasets checkpoint "
                   "managers per scale (a format that fails is recorded with Kura's error). Table checkpoint_results.")
def kura_checkpoint_formats(context: AssetExecutionContext, config: CheckpointFormatsConfig,
                            kura_perf: KuraPerfResource) -> MaterializeResult:
    paths = kura_perf.paths()
    rows = run_checkpoint_benchmark(config.scales, config.formats, workdir=paths.root / "usability" / "checkpoints",
                                    run_id=context.run.run_id, log=context.log.info)
    write_records(paths.metrics, "checkpoint_results", rows)
    failed = sum(1 for r in rows if r["status"] != "success")
    return MaterializeResult(metadata={
        "rows": MetadataValue.int(len(rows)), "not_round_tripping": MetadataValue.int(failed),
        "results": _table(rows, CHECKPOINT_COLUMNS)})


@asset(group_name="kura_usability", kinds={"python"},
       description="The catalogue of bad inputs fed to Kura, each error graded by explicit rules (names the "
                   "subject? says what was expected? suggests a fix? raw traceback?). Table error_clarity.")
def kura_error_clarity(context: AssetExecutionContext, kura_perf: KuraPerfResource) -> MaterializeResult:
    paths = kura_perf.paths()
    rows = run_error_catalogue(paths.root / "usability" / "error_clarity", run_id=context.run.run_id,
                               log=context.log.info)
    write_records(paths.metrics, "error_clarity", rows)
    return MaterializeResult(metadata={
        "cases": MetadataValue.int(len(rows)), "clear": MetadataValue.int(sum(1 for r in rows if r["grade"] == "clear")),
        "grades": _table(rows, GRADE_COLUMNS)})


usability_assets = [kura_checkpoint_formats, kura_error_clarity]
