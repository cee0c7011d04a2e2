"""The stage record: one row of the `stage_runs` table as a typed object, and the one list of its columns.

It is the central contract between the runner (which measures and stores), the reaper (which records
deaths), the checks and the CLI (which read one record).
Fields are attributes, so a typo'd name is an error where it is written (the constructor, `replace`
and `from_dict` reject unknown names; it is frozen, so nothing is set on it afterwards) instead of a
silently missing column. `store/schema.py` derives the STAGE_RUNS schema from these fields (`columns`):
the names and order of the fields, the store type of each annotation (`arrow_type`), field metadata
where the annotation is not enough. Adding a field adds the column; a test holds the derived schema
to the frozen list of the columns already on disk.

Readers of the stored table through DuckDB or pandas keep working on columns; this object is for one
fresh record. No Dagster here.
"""

from __future__ import annotations

import dataclasses
import json
import math
import typing
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Mapping

import numpy as np
import pandas as pd
import pyarrow as pa

# Field metadata. "column": False - the field travels with the record but is no stage_runs column.
# "comparability": True - one of the facts every table of the store carries to say which records compare
# (schema.COMPARABILITY). "arrow": the column's pyarrow type when the annotation alone does not say it.
_NOT_A_COLUMN = {"column": False}
_COMPARABILITY = {"comparability": True}


class UnknownRecordField(ValueError):
    """A stage record was given names that are not its fields (a typo, or a column missing from StageRecord)."""


@dataclass(frozen=True, kw_only=True)
class StageRecord:
    """One stage run's figures. Every column may be null (a died or unmeasured record has few)."""

    record_id: str | None = None
    stage: str | None = None
    shape: str | None = None  # minimal | full | custom | streaming (kura_perf/pipeline/shapes.py); None: ad-hoc stages
    backend: str | None = None
    profile: str | None = None
    profile_hash: str | None = None
    scale: str | None = None
    scale_n: int | None = None  # conversations the partition asks for
    status: str | None = None  # success | failed | breaking_point | interrupted | died
    error_type: str | None = None
    error_message: str | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    wall_s: float | None = None
    cpu_user_s: float | None = None
    cpu_sys_s: float | None = None
    rss_start_mb: float | None = None
    peak_rss_mb: float | None = None
    peak_method: str | None = None
    mem_timeline_s: list[float] | None = None
    mem_timeline_mb: list[float] | None = None
    items_in: int | None = None
    items_out: int | None = None
    items_per_s: float | None = None
    bytes_written: int | None = None
    skipped_records: int | None = None
    api_calls: int | None = None
    api_errors: int | None = None
    api_429s: int | None = None
    api_retries: int | None = None
    api_timeouts: int | None = None
    tokens_in: int | None = None
    tokens_out: int | None = None
    cost_usd: float | None = None  # null when a model's price is unknown (see warnings), never a silent 0
    warnings: str | None = None  # "; "-joined: what makes a figure incomplete (e.g. an unpriced model)
    latency_p50_ms: float | None = None
    latency_p95_ms: float | None = None
    latency_p99_ms: float | None = None
    silhouette: float | None = None
    davies_bouldin: float | None = None
    n_clusters: int | None = None
    noise_share: float | None = None
    ari: float | None = None
    nmi: float | None = None
    v_measure: float | None = None
    metered: bool | None = None
    meter_cpu_s: float | None = None
    # Who ran the MiniLM embeddings of the pipeline (torch | onnx | onnx-int8; api for API models), on
    # every stage record; and, on embeddings records, the bare model's texts/s on model_sample_n of the
    # same texts, timed in the same process just before the stage: stage vs model from one run.
    embedding_backend: str | None = None
    model_items_per_s: float | None = None
    model_sample_n: int | None = None
    jit_compiled: bool | None = None  # numba compiled fresh code inside the stage (extra.jit has the counts)
    extra: str | None = None  # JSON: stage-specific figures (iterations, k, files, ...)
    # Which worker ran it: Celery worker name (or host) and pid. host_fingerprint says which machine type.
    worker: str | None = None
    # How far a stage got (from its progress log) and, for one that did not finish, a projection
    # (kura_perf/meter/projection.py). projection_kind: 'linear-in-items', or None when none is honest.
    items_done: int | None = None
    items_total: int | None = None
    rate_items_per_s: float | None = None
    elapsed_s: float | None = None
    projected_wall_s: float | None = None
    projection_kind: str | None = None
    # Time that is not the stage's work, each its own figure (issue 20): jit_compile_s, seconds of wall_s
    # numba spent compiling (one-time per machine with a warm cache; never above wall_s); startup_s,
    # seconds of wall_s importing numba/umap-learn for the first time in the process (per process);
    # stage_work_s, wall_s without both (what shares, fits and projections use); setup_s, the backend's
    # prepare before the stage (model loads, calibration: per process), outside wall_s. Null in older records.
    jit_compile_s: float | None = None
    startup_s: float | None = None
    stage_work_s: float | None = None
    setup_s: float | None = None
    # The quiet-box protocol (issue 19, meter/host_load.py): CPU seconds OTHER processes took on this host
    # over the stage (the box's busy CPU from /proc/stat minus this process tree's), that as a share of
    # wall x cores, and contended: the share above host_load.CONTENDED_SHARE (0.10). Published tables use
    # uncontended records only. Null in older records and where /proc/stat cannot be read (unknown).
    host_other_cpu_s: float | None = None
    host_contention: float | None = None
    contended: bool | None = None

    # How much faster than the modelled API the simulator answered (issue 24): its speed_factor, 1.0 =
    # each model's published speed (a prediction), 10 = ten times faster (times scaled, not a prediction);
    # null when no simulator served the stage (a real endpoint, a local model) and in older records.
    sim_speed_factor: float | None = None

    # Which Kura (issue 21): the spec as given (`kura==0.5.2`, `path:…`, `git:…@<sha>`) and what it resolved to
    # (the version, the commit, a checkout's "<commit>[-dirty] tree <hash>"); None: the Kura installed in
    # kura_perf's own environment (kura_version says which).
    kura_spec: str | None = None
    kura_resolved: str | None = None
    # Comparability: which run, code and host (every table of the store carries these, schema.COMPARABILITY).
    run_id: str | None = field(default=None, metadata=_COMPARABILITY)
    code_version: str | None = field(default=None, metadata=_COMPARABILITY)
    package_versions: str | None = field(default=None, metadata=_COMPARABILITY)  # JSON {package: version}
    kura_version: str | None = field(default=None, metadata=_COMPARABILITY)
    host_fingerprint: str | None = field(default=None, metadata=_COMPARABILITY)
    host_cpu: str | None = field(default=None, metadata=_COMPARABILITY)
    host_cores: int | None = field(default=None, metadata=_COMPARABILITY)
    host_ram_gb: float | None = field(default=None, metadata=_COMPARABILITY)
    host_os: str | None = field(default=None, metadata=_COMPARABILITY)
    # Not a column: the per-level clustering quality rows, carried from the run into the
    # quality_levels table (store/stage_records.py write_stage_record).
    quality_levels: list[dict] = field(default_factory=list, metadata=_NOT_A_COLUMN)

    # -- building ---------------------------------------------------------------------------------
    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "StageRecord":
        """From a mapping of field names (a kept record, a row); unknown names are an error."""
        unknown = set(data) - set(FIELD_NAMES)
        if unknown:
            raise UnknownRecordField(f"stage record: unknown fields {sorted(unknown)}")
        return cls(**data)

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> "StageRecord":
        """From a stored row (DuckDB/pandas): NaN and NaT become None, numpy scalars and arrays Python values."""
        return cls.from_dict({name: clean_value(value) for name, value in row.items()})

    @classmethod
    def from_json(cls, text: str) -> "StageRecord":
        data = json.loads(text)
        for name in TIMESTAMP_FIELDS:
            if data.get(name):
                data[name] = datetime.fromisoformat(data[name])
        return cls.from_dict(data)

    def replace(self, **changes: Any) -> "StageRecord":
        """A copy with `changes` (field names only: an unknown one raises)."""
        unknown = set(changes) - set(FIELD_NAMES)
        if unknown:
            raise UnknownRecordField(f"stage record: unknown fields {sorted(unknown)}")
        return dataclasses.replace(self, **changes)

    # -- converting at the edges ------------------------------------------------------------------
    def as_row(self) -> dict[str, Any]:
        """The stage_runs row: every column, in schema order (what the Parquet writer takes)."""
        return {name: getattr(self, name) for name in COLUMN_NAMES}

    def as_dict(self) -> dict[str, Any]:
        """Every field, the carried quality levels included (what a running marker keeps when the store cannot take it)."""
        return {name: getattr(self, name) for name in FIELD_NAMES}

    def to_json(self) -> str:
        return json.dumps(self.as_dict(), default=_json_default)


FIELD_NAMES: tuple[str, ...] = tuple(f.name for f in dataclasses.fields(StageRecord))
COLUMN_NAMES: tuple[str, ...] = tuple(f.name for f in dataclasses.fields(StageRecord)
                                      if f.metadata.get("column", True))
_HINTS = typing.get_type_hints(StageRecord)
TIMESTAMP_FIELDS: tuple[str, ...] = tuple(name for name in COLUMN_NAMES if _HINTS[name] == datetime | None)

# The Arrow type each Python annotation stands for in the store.
TIMESTAMP = pa.timestamp("us", tz="UTC")
_ARROW = {
    str | None: pa.string(),
    int | None: pa.int64(),
    float | None: pa.float64(),
    bool | None: pa.bool_(),
    datetime | None: TIMESTAMP,
    list[float] | None: pa.list_(pa.float64()),
}


def arrow_type(annotation) -> pa.DataType | None:
    """The store type of a StageRecord annotation (None: no column type matches it)."""
    return _ARROW.get(annotation)


def columns(record_type: type = StageRecord, comparability: bool | None = None) -> list[tuple[str, pa.DataType]]:
    """(name, pyarrow type) of each column field of `record_type`, in field order: the stage_runs columns.
    comparability=True: only the comparability fields; False: only the others. A field whose annotation
    has no store type and that gives none as metadata "arrow" is an error, not a column left out."""
    hints = typing.get_type_hints(record_type)
    found = []
    for f in dataclasses.fields(record_type):
        if not f.metadata.get("column", True):
            continue
        if comparability is not None and bool(f.metadata.get("comparability")) != comparability:
            continue
        arrow = f.metadata.get("arrow") or arrow_type(hints[f.name])
        if arrow is None:
            raise TypeError(f"{record_type.__name__}.{f.name}: no store type for {hints[f.name]}; "
                            "give one as field metadata 'arrow'")
        found.append((f.name, arrow))
    return found


def clean_value(value):
    """Store rows come back with NaN/NaT for nulls and numpy scalars; records use None and Python types."""
    if value is None or value is pd.NaT:
        return None
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, np.ndarray) and value.ndim == 1:  # a list column read back as an array
        return value.tolist()
    if hasattr(value, "item") and not isinstance(value, (list, tuple)) and getattr(value, "ndim", 0) == 0:
        value = value.item()
        return None if isinstance(value, float) and math.isnan(value) else value
    return value


def _json_default(value):
    return value.isoformat() if isinstance(value, datetime) else str(value)
