"""The concurrency sweep as an asset beside the pipeline (group `api_load`): summaries and embeddings
of a sample of the partition's conversations at several concurrency levels."""

import math

from dagster import (
    AssetExecutionContext,
    AssetKey,
    Config,
    MaterializeResult,
    MetadataValue,
    MultiPartitionsDefinition,
    TableColumn,
    TableRecord,
    TableSchema,
    asset,
)

from kura_perf.backends.conversion import conversations_from_table
from kura_perf.defs.resources import KuraPerfResource
from kura_perf.defs.simulator import ApiSimulatorResource
from kura_perf.experiments.sweep import DEFAULT_LEVELS, run_sweep, sweep_stages
from kura_perf.files.outputs import read_stage
from kura_perf.store import write_records


class SweepConfig(Config):
    levels: list[int] = list(DEFAULT_LEVELS)
    items: int = 200  # conversations (and summaries) per level


def build_sweep_asset(partitions: MultiPartitionsDefinition):
    @asset(
        name="api_concurrency_sweep",
        partitions_def=partitions,
        deps=[AssetKey("conversations"), AssetKey("summaries")],
        group_name="api_load",
        kinds={"python"},
        description="Throughput, latency, 429 share and cost of the API stages at 1/5/10/20/50 concurrent requests.",
    )
    def api_concurrency_sweep(context: AssetExecutionContext, config: SweepConfig, kura_perf: KuraPerfResource,
                              api_simulator: ApiSimulatorResource) -> MaterializeResult:
        return sweep_partition(context, config, kura_perf.settings(simulator_url=api_simulator.base_url))

    return api_concurrency_sweep


def sweep_partition(context: AssetExecutionContext, config: SweepConfig, settings) -> MaterializeResult:
    keys = context.partition_key.keys_by_dimension
    profile = settings.profile(keys["profile"])
    if not sweep_stages(profile):
        return MaterializeResult(metadata={"skipped": f"profile '{profile.name}' has no API-backed models"})
    paths = settings.paths
    folder = paths.partition_dir(profile.name, keys["scale"])
    conversations = conversations_from_table(read_stage(folder, "conversations").tables["main"])[: config.items]
    texts = read_stage(folder, "summaries").tables["main"]["embed_text"].tolist()[: config.items]
    rows = run_sweep(profile, keys["scale"], conversations, texts, levels=config.levels,
                     run_id=context.run.run_id, log=context.log.info, settings=settings)
    write_records(paths.metrics, "sweep_results", rows)
    records = [TableRecord({"stage": r["stage"], "concurrency": int(r["concurrency"]),
                            "items_per_min": _number(r["items_per_min"]), "latency_p95_ms": _number(r["latency_p95_ms"]),
                            "share_429": _number(r["share_429"]), "api_retries": _int(r["api_retries"]),
                            "status": str(r["status"])}) for r in rows]
    return MaterializeResult(metadata={"sweep": MetadataValue.table(records, schema=SWEEP_SCHEMA),
                                       "levels": MetadataValue.int(len(rows))})


SWEEP_SCHEMA = TableSchema(columns=[
    TableColumn("stage", "string"), TableColumn("concurrency", "int"), TableColumn("items_per_min", "float"),
    TableColumn("latency_p95_ms", "float"), TableColumn("share_429", "float", description="share of requests answered 429"),
    TableColumn("api_retries", "int"), TableColumn("status", "string")])


def _number(value) -> float | None:
    return None if value is None or math.isnan(float(value)) else round(float(value), 4)


def _int(value) -> int | None:
    return None if value is None or math.isnan(float(value)) else int(value)
