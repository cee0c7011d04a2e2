"""Kura's usability as assets (group `kura_usability`): the checkpoint-format benchmark and the
error-clarity catalogue. Unpartitioned (each covers several scales or none); the work lives in
kura_perf/experiments/usability/, these bodies only call it and record the rows."""

from dagster import AssetExecutionContext, Config, MaterializeResult, MetadataValue, asset

from kura_perf.defs.resources import KuraPerfResource
from kura_perf.store import write_records


class CheckpointFormatsConfig(Config):
    scales: list[str] = ["100", "1k"]
    formats: list[str] = ["jsonl", "parquet", "hf_datasets"]


def _markdown(rows: list[dict], columns: list[str]) -> str:
    def cell(value) -> str:
        if isinstance(value, float):
            return f"{value:.3f}"
        return "" if value is None else str(value).replace("|", "\\|").replace("\n", " ")[:80]

    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(cell(r.get(c)) for c in columns) + " |" for r in rows]
    return "\n".join(lines)


@asset(group_name="kura_usability", kinds={"python"},
       description="Write/reload time, bytes and peak memory of Kura's JSONL, Parquet and HF datasets checkpoint "
                   "managers per scale (a format that fails is recorded with Kura's error). Table checkpoint_results.")
def kura_checkpoint_formats(context: AssetExecutionContext, config: CheckpointFormatsConfig,
                            kura_perf: KuraPerfResource) -> MaterializeResult:
    from kura_perf.experiments.usability.checkpoints import run_checkpoint_benchmark

    paths = kura_perf.paths()
    rows = run_checkpoint_benchmark(config.scales, config.formats, workdir=paths.root / "usability" / "checkpoints",
                                    run_id=context.run.run_id, log=context.log.info)
    write_records(paths.metrics, "checkpoint_results", rows)
    failed = sum(1 for r in rows if r["status"] != "success")
    return MaterializeResult(metadata={
        "rows": len(rows), "not_round_tripping": failed,
        "results": MetadataValue.md(_markdown(rows, ["format", "scale", "kind", "status", "write_s", "read_s",
                                                     "bytes", "write_peak_rss_mb", "read_peak_rss_mb"]))})


@asset(group_name="kura_usability", kinds={"python"},
       description="The catalogue of bad inputs fed to Kura, each error graded by explicit rules (names the "
                   "subject? says what was expected? suggests a fix? raw traceback?). Table error_clarity.")
def kura_error_clarity(context: AssetExecutionContext, kura_perf: KuraPerfResource) -> MaterializeResult:
    from kura_perf.experiments.usability.error_clarity import run_error_catalogue

    paths = kura_perf.paths()
    rows = run_error_catalogue(paths.root / "usability" / "error_clarity", run_id=context.run.run_id,
                               log=context.log.info)
    write_records(paths.metrics, "error_clarity", rows)
    return MaterializeResult(metadata={
        "cases": len(rows), "clear": sum(1 for r in rows if r["grade"] == "clear"),
        "grades": MetadataValue.md(_markdown(rows, ["case_id", "outcome", "error_type", "score", "grade"]))})


usability_assets = [kura_checkpoint_formats, kura_error_clarity]
