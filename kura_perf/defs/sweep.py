"""The concurrency sweep as an asset beside the pipeline (group `api_load`): summaries and embeddings
of a sample of the partition's conversations at several concurrency levels."""

from dagster import AssetExecutionContext, AssetKey, Config, MaterializeResult, MetadataValue, asset

from kura_perf.backends.conversion import conversations_from_table
from kura_perf.defs.partitions import benchmark_partitions
from kura_perf.defs.resources import KuraPerfResource
from kura_perf.defs.simulator import ApiSimulatorResource
from kura_perf.outputs import read_stage
from kura_perf.store import write_records
from kura_perf.sweep import DEFAULT_LEVELS, run_sweep, sweep_stages


class SweepConfig(Config):
    levels: list[int] = list(DEFAULT_LEVELS)
    items: int = 200  # conversations (and summaries) per level


@asset(
    partitions_def=benchmark_partitions,
    deps=[AssetKey("conversations"), AssetKey("summaries")],
    group_name="api_load",
    kinds={"python"},
    description="Throughput, latency, 429 share and cost of the API stages at 1/5/10/20/50 concurrent requests.",
)
def api_concurrency_sweep(context: AssetExecutionContext, config: SweepConfig, kura_perf: KuraPerfResource,
                          api_simulator: ApiSimulatorResource) -> MaterializeResult:
    keys = context.partition_key.keys_by_dimension
    profile = kura_perf.profile(keys["profile"])
    if not sweep_stages(profile):
        return MaterializeResult(metadata={"skipped": f"profile '{profile.name}' has no API-backed models"})
    paths = kura_perf.paths()
    folder = paths.partition_dir(profile.name, keys["scale"])
    conversations = conversations_from_table(read_stage(folder, "conversations").tables["main"])[: config.items]
    texts = read_stage(folder, "summaries").tables["main"]["embed_text"].tolist()[: config.items]
    rows = run_sweep(profile, keys["scale"], conversations, texts, levels=config.levels,
                     run_id=context.run.run_id, log=context.log.info)
    write_records(paths.metrics, "sweep_results", rows)
    table = "| stage | concurrency | items/min | p95 ms | 429 share | retries | status |\n|---|---|---|---|---|---|---|\n"
    for r in rows:
        table += (f"| {r['stage']} | {r['concurrency']} | {r['items_per_min'] or 0:.0f} | "
                  f"{r['latency_p95_ms'] or 0:.0f} | {r['share_429'] or 0:.1%} | {r['api_retries']} | {r['status']} |\n")
    return MaterializeResult(metadata={"sweep": MetadataValue.md(table), "levels": len(rows)})
