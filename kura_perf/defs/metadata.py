"""A stage's figures as typed Dagster metadata: numbers as MetadataValue.int/float, the per-level
quality as a MetadataValue.table with its TableSchema. Shared by the stage assets (defs/assets.py)
and the embeddings asset's merge step (defs/embeddings.py)."""

import math

from dagster import MetadataValue, TableColumn, TableRecord, TableSchema

from kura_perf.pipeline.shapes import CUSTOM_STAGE, ShapeSettings
from kura_perf.stages.level_quality import finest_rows
from kura_perf.store.record import StageRecord


def _rounded(value, digits: int = 3) -> float | None:
    return None if value is None else round(float(value), digits)


def stage_metadata(record: StageRecord) -> dict:
    meta = {
        "rows": record.items_out,
        "wall_s": _rounded(record.wall_s),
        # wall_s = stage_work_s + jit_compile_s + startup_s; setup_s (model loads) came before the wall.
        "stage_work_s": _rounded(record.stage_work_s),
        "jit_compile_s": _rounded(record.jit_compile_s),
        "startup_s": _rounded(record.startup_s),
        "setup_s": _rounded(record.setup_s),
        "cpu_s": _rounded(record.cpu_user_s) + _rounded(record.cpu_sys_s),
        "peak_rss_mb": _rounded(record.peak_rss_mb, 1),
        "rss_start_mb": _rounded(record.rss_start_mb, 1),
        "items_per_s": _rounded(record.items_per_s, 1),
        # MB (decimal, as `du --si`): a byte count of 154208016 reads as nothing in the UI.
        "written_mb": None if record.bytes_written is None else _rounded(record.bytes_written / 1e6, 3),
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
    return {k: typed(v) for k, v in meta.items() if v is not None}


def typed(value):
    """A metadata value with its type spelled out (ints and floats as such; the rest as Dagster infers)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return value
    return MetadataValue.int(value) if isinstance(value, int) else MetadataValue.float(value)


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
        meta["custom_step_wall_s"] = MetadataValue.float(round(float(step.wall_s), 3))
        meta["custom_step_record_id"] = step.record_id
    if settings.shape not in (None, "full"):
        meta["output_folder"] = str(outcome.folder)
    return meta


LEVEL_COLUMNS = (("truth_level", "string"), ("true_classes", "int"), ("level", "int"), ("n_clusters", "int"),
                 ("noise_share", "float"), ("ari", "float"), ("nmi", "float"), ("homogeneity", "float"),
                 ("completeness", "float"), ("topics_found", "int"), ("silhouette", "float"),
                 ("is_topic_level", "bool"))


def table_value(value):
    """A table cell: a plain int, float, bool or str (numpy scalars unwrapped; NaN, None: empty)."""
    if value is None:
        return None
    if hasattr(value, "item"):  # numpy scalar
        value = value.item()
    if isinstance(value, float):
        return None if math.isnan(value) else round(value, 4)
    return value if isinstance(value, (bool, int, str)) else str(value)


def level_metadata(levels: list[dict]) -> dict:
    """Per-level quality (every truth level) as a table, plus the topic level's ARI/NMI as
    plottable numbers: topic_level_* for the finest truth level, topic_level_<truth>_* for coarser ones."""
    if not levels:
        return {}

    schema = TableSchema(columns=[TableColumn(name, kind) for name, kind in LEVEL_COLUMNS])
    rows = [TableRecord({name: (bool(level.get(name)) if kind == "bool" else table_value(level.get(name)))
                         for name, kind in LEVEL_COLUMNS}) for level in levels]
    meta: dict = {"quality_levels": MetadataValue.table(rows, schema=schema)}
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
