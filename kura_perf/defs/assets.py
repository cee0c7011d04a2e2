"""The Kura pipeline's stages as partitioned assets. Each body is a few lines: resolve the partition,
run the stage through the core runner (which measures it), return its figures as metadata."""


from dagster import AssetExecutionContext, AssetKey, MaterializeResult, MetadataValue, MultiPartitionsDefinition, asset

from kura_perf.defs.hooks import STAGE_HOOKS
from kura_perf.defs.resources import KuraPerfResource
from kura_perf.defs.simulator import ApiSimulatorResource
from kura_perf.pipeline.preflight import check_run_inputs
from kura_perf.pipeline.shapes import CUSTOM_STAGE, ShapeSettings, run_shape_stage
from kura_perf.scales import scale_count
from kura_perf.stages.base import STAGES, UPSTREAM
from kura_perf.store.record import StageRecord

DESCRIPTIONS = {
    "conversations": "Conversations for the partition: synthetic (ground-truth topics) or the profile's data file.",
    "summaries": "Kura's per-conversation summary fields, from the profile's summary model.",
    "embeddings": "One vector per summary, from the profile's embedding model (.npy).",
    "clusters": "Base clusters with names and descriptions; clustering quality in the record.",
    "meta_clusters": "Kura's hierarchy: base clusters reduced to at most meta_max_clusters roots.",
    "projections": "2-D coordinates of every conversation (UMAP or PCA).",
}


def _rounded(value, digits: int = 3) -> float | None:
    return None if value is None else round(float(value), digits)


def stage_metadata(record: StageRecord) -> dict:
    meta = {
        "rows": record.items_out,
        "wall_s": _rounded(record.wall_s),
        "cpu_s": _rounded(record.cpu_user_s) + _rounded(record.cpu_sys_s),
        "peak_rss_mb": _rounded(record.peak_rss_mb, 1),
        "rss_start_mb": _rounded(record.rss_start_mb, 1),
        "items_per_s": _rounded(record.items_per_s, 1),
        "bytes_written": record.bytes_written,
        "record_id": record.record_id,
        "profile_hash": record.profile_hash,
        "code_version": record.code_version,
    }
    optional = {"n_clusters": record.n_clusters, "silhouette": record.silhouette, "ari": record.ari,
                "nmi": record.nmi, "noise_share": record.noise_share, "api_calls": record.api_calls,
                "api_429s": record.api_429s, "cost_usd": record.cost_usd}
    for key, value in optional.items():
        if value is not None:
            meta[key] = _rounded(value, 4) if isinstance(value, float) else value
    meta["embedding_backend"] = record.embedding_backend
    if record.model_items_per_s:
        meta["model_items_per_s"] = _rounded(record.model_items_per_s, 1)
        meta["model_sample_n"] = record.model_sample_n
        if record.items_per_s:  # the stage's texts/s over the bare model's, same process
            meta["stage_vs_model"] = round(record.items_per_s / record.model_items_per_s, 3)
    meta.update(level_metadata(record.quality_levels))
    return {k: (MetadataValue.int(v) if isinstance(v, int) else v) for k, v in meta.items() if v is not None}


def shape_metadata(stage: str, settings: ShapeSettings, outcome) -> dict:
    """The stage's figures, plus the shape and what a checkpoint let the run skip or a custom step did."""
    record = outcome.record_of(stage)
    meta = stage_metadata(record) if record else {"resumed_from_checkpoint": True}
    if settings.shape:
        meta["shape"] = settings.shape
    if outcome.resumed:
        meta["resumed"] = ", ".join(outcome.resumed)
    step = outcome.record_of(CUSTOM_STAGE)
    if step:
        meta["custom_step_wall_s"] = round(float(step.wall_s), 3)
        meta["custom_step_record_id"] = step.record_id
    if settings.shape not in (None, "full"):
        meta["output_folder"] = str(outcome.folder)
    return meta


def level_metadata(levels: list[dict]) -> dict:
    """Per-level quality (every truth level) as a markdown table, plus the topic level's ARI/NMI as
    plottable numbers: topic_level_* for the finest truth level, topic_level_<truth>_* for coarser ones."""
    if not levels:
        return {}
    from kura_perf.stages.level_quality import finest_rows

    def cell(value):
        return "" if value is None else (f"{value:.3f}" if isinstance(value, float) else str(value))

    keys = ("truth_level", "true_classes", "level", "n_clusters", "noise_share", "ari", "nmi", "homogeneity",
            "completeness", "topics_found", "silhouette")
    rows = ["| " + " | ".join(keys) + " | topic level |", "|" + "---|" * (len(keys) + 1)]
    for level in levels:
        rows.append("| " + " | ".join(cell(level.get(k)) for k in keys) + f" | {'yes' if level.get('is_topic_level') else ''} |")
    meta: dict = {"quality_levels": MetadataValue.md("\n".join(rows))}
    finest = finest_rows(levels)
    topic = next((level for level in finest if level.get("is_topic_level")), None)
    if topic is not None:
        meta["topic_level"] = topic["level"]
        for key in ("ari", "nmi"):
            if topic.get(key) is not None:
                meta[f"topic_level_{key}"] = round(float(topic[key]), 4)
    finest_ids = {id(level) for level in finest}
    for coarse in (level for level in levels if level.get("is_topic_level") and id(level) not in finest_ids):
        name = str(coarse.get("truth_level")).replace(".", "_")
        meta[f"topic_level_{name}"] = coarse["level"]
        for key in ("ari", "nmi"):
            if coarse.get(key) is not None:
                meta[f"topic_level_{name}_{key}"] = round(float(coarse[key]), 4)
    levels = finest
    base = next((level for level in levels if level["level"] == 0), None)
    if base is not None and base.get("homogeneity") is not None:
        meta["base_homogeneity"] = round(float(base["homogeneity"]), 4)
    return meta


def build_stage_asset(stage: str, partitions: MultiPartitionsDefinition):
    @asset(
        name=stage,
        partitions_def=partitions,
        deps=[AssetKey(up) for up in UPSTREAM[stage]],
        hooks=STAGE_HOOKS,
        group_name="kura_pipeline",
        kinds={"python"},
        description=DESCRIPTIONS[stage],
    )
    def _stage_asset(context: AssetExecutionContext, kura_perf: KuraPerfResource,
                     api_simulator: ApiSimulatorResource) -> MaterializeResult:
        keys = context.partition_key.keys_by_dimension
        settings = ShapeSettings.from_tags(context.run.tags)  # the shape job's tags (none: a plain stage run)
        run_settings = kura_perf.settings(simulator_url=api_simulator.base_url)
        profile = check_run_inputs(run_settings, keys["profile"], stages=[stage],
                                   scale_n=scale_count(keys["scale"]))  # a UI-launched run too
        outcome = run_shape_stage(stage, settings, profile, keys["scale"], context.run.run_id, run_settings)
        return MaterializeResult(metadata=shape_metadata(stage, settings, outcome))

    return _stage_asset


def build_stage_assets(partitions: MultiPartitionsDefinition) -> list:
    return [build_stage_asset(stage, partitions) for stage in STAGES]
