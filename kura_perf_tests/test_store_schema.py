"""The store's on-disk schema is a contract with every data root already written.

STAGE_RUNS (and COMPARABILITY, which every table carries) are derived from the StageRecord dataclass
(kura_perf/store/record.py). The explicit lists below are the schema as it was when it was still
written out by hand, frozen: the derived schema must equal them, column for column, type for type,
so existing record files keep reading. A new column is appended here in the same change that adds
the field (and the views stay compatible with the files that lack it); a renamed, retyped or
reordered one fails.
"""

from __future__ import annotations

import dataclasses
from datetime import datetime

import pyarrow as pa
import pytest

from kura_perf.store.record import StageRecord, columns
from kura_perf.store.schema import COMPARABILITY, SHARD_RUNS, STAGE_RUNS, TABLES, duckdb_type

_TS = pa.timestamp("us", tz="UTC")

FROZEN_COMPARABILITY = [
    ("run_id", pa.string()),
    ("code_version", pa.string()),
    ("package_versions", pa.string()),  # JSON {package: version}
    ("kura_version", pa.string()),
    ("host_fingerprint", pa.string()),
    ("host_cpu", pa.string()),
    ("host_cores", pa.int64()),
    ("host_ram_gb", pa.float64()),
    ("host_os", pa.string()),
]

FROZEN_STAGE_RUNS = pa.schema([
    ("record_id", pa.string()),
    ("stage", pa.string()),
    ("shape", pa.string()),  # minimal | full | custom | streaming (kura_perf/pipeline/shapes.py); NULL: ad-hoc stages
    ("backend", pa.string()),
    ("profile", pa.string()),
    ("profile_hash", pa.string()),
    ("scale", pa.string()),
    ("scale_n", pa.int64()),  # conversations the partition asks for
    ("status", pa.string()),  # success | failed | breaking_point | interrupted | died
    ("error_type", pa.string()),
    ("error_message", pa.string()),
    ("started_at", _TS),
    ("finished_at", _TS),
    ("wall_s", pa.float64()),
    ("cpu_user_s", pa.float64()),
    ("cpu_sys_s", pa.float64()),
    ("rss_start_mb", pa.float64()),
    ("peak_rss_mb", pa.float64()),
    ("peak_method", pa.string()),
    ("mem_timeline_s", pa.list_(pa.float64())),
    ("mem_timeline_mb", pa.list_(pa.float64())),
    ("items_in", pa.int64()),
    ("items_out", pa.int64()),
    ("items_per_s", pa.float64()),
    ("bytes_written", pa.int64()),
    ("skipped_records", pa.int64()),
    ("api_calls", pa.int64()),
    ("api_errors", pa.int64()),
    ("api_429s", pa.int64()),
    ("api_retries", pa.int64()),
    ("api_timeouts", pa.int64()),
    ("tokens_in", pa.int64()),
    ("tokens_out", pa.int64()),
    ("cost_usd", pa.float64()),  # null when a model's price is unknown (see warnings), never a silent 0
    ("warnings", pa.string()),  # "; "-joined: what makes a figure incomplete (e.g. an unpriced model)
    ("latency_p50_ms", pa.float64()),
    ("latency_p95_ms", pa.float64()),
    ("latency_p99_ms", pa.float64()),
    ("silhouette", pa.float64()),
    ("davies_bouldin", pa.float64()),
    ("n_clusters", pa.int64()),
    ("noise_share", pa.float64()),
    ("ari", pa.float64()),
    ("nmi", pa.float64()),
    ("v_measure", pa.float64()),
    ("metered", pa.bool_()),
    ("meter_cpu_s", pa.float64()),
    # Who ran the MiniLM embeddings of the pipeline (torch | onnx | onnx-int8; api for API models), on
    # every stage record; and, on embeddings records, the bare model's texts/s on model_sample_n of the
    # same texts, timed in the same process just before the stage: stage vs model from one run.
    ("embedding_backend", pa.string()),
    ("model_items_per_s", pa.float64()),
    ("model_sample_n", pa.int64()),
    ("jit_compiled", pa.bool_()),  # numba compiled fresh code inside the stage (extra.jit has the counts)
    ("extra", pa.string()),  # JSON: stage-specific figures (iterations, k, files, ...)
    # Which worker ran it: Celery worker name (or host) and pid. host_fingerprint says which machine type.
    ("worker", pa.string()),
    # How far a stage got (from its progress log) and, for one that did not finish, a projection
    # (kura_perf/meter/projection.py). projection_kind: 'linear-in-items', or NULL when none is honest.
    ("items_done", pa.int64()),
    ("items_total", pa.int64()),
    ("rate_items_per_s", pa.float64()),
    ("elapsed_s", pa.float64()),
    ("projected_wall_s", pa.float64()),
    ("projection_kind", pa.string()),
    # Time that is not the stage's work (issue 20): numba compile and the first umap import inside
    # wall_s, wall_s without them, and the backend's prepare (model loads) outside wall_s. Absent from
    # older files (NULL there).
    ("jit_compile_s", pa.float64()),
    ("startup_s", pa.float64()),
    ("stage_work_s", pa.float64()),
    ("setup_s", pa.float64()),
    # The quiet-box protocol (issue 19): other processes' CPU over the stage, its share of the box, and
    # whether that share is above the contended threshold. Absent from older files (NULL there).
    ("host_other_cpu_s", pa.float64()),
    ("host_contention", pa.float64()),
    ("contended", pa.bool_()),
    # The simulator's speed_factor (issue 24): 1 = the modelled API's speed, N = N times faster (scaled,
    # not a prediction); NULL without a simulator and in older files.
    ("sim_speed_factor", pa.float64()),
    # Which Kura a record measured (issue 21): the spec as given and what it resolved to; NULL in older files
    # and for the Kura of kura_perf's own environment.
    ("kura_spec", pa.string()),
    ("kura_resolved", pa.string()),
    *FROZEN_COMPARABILITY,
])


def test_the_derived_stage_runs_schema_is_the_frozen_one():
    assert STAGE_RUNS.names == FROZEN_STAGE_RUNS.names
    assert [(f.name, f.type) for f in STAGE_RUNS] == [(f.name, f.type) for f in FROZEN_STAGE_RUNS]
    assert STAGE_RUNS.equals(FROZEN_STAGE_RUNS, check_metadata=True)
    assert TABLES["stage_runs"] is STAGE_RUNS


def test_the_derived_comparability_columns_are_the_frozen_ones():
    assert COMPARABILITY == FROZEN_COMPARABILITY
    assert [(f.name, f.type) for f in STAGE_RUNS][-len(COMPARABILITY):] == COMPARABILITY
    for name, table in TABLES.items():
        if name not in ("alerts", "sweep_results", "baseline_pins"):  # these carry a few of them, not all
            assert [(f.name, f.type) for f in table if f.name in dict(COMPARABILITY)] == COMPARABILITY, name


def test_shard_runs_is_stage_runs_plus_the_shard_columns():
    assert SHARD_RUNS.names[:len(FROZEN_STAGE_RUNS)] == FROZEN_STAGE_RUNS.names
    assert SHARD_RUNS.names[len(FROZEN_STAGE_RUNS):] == ["shard_index", "shard_count", "row_start", "row_stop",
                                                          "attempt_id"]


def test_every_stage_runs_column_has_a_duckdb_type():
    assert [duckdb_type(f.type) for f in STAGE_RUNS][:14] == [
        "VARCHAR", "VARCHAR", "VARCHAR", "VARCHAR", "VARCHAR", "VARCHAR", "VARCHAR", "BIGINT", "VARCHAR", "VARCHAR",
        "VARCHAR", "TIMESTAMPTZ", "TIMESTAMPTZ", "DOUBLE"]
    assert duckdb_type(STAGE_RUNS.field("mem_timeline_s").type) == "DOUBLE[]"
    assert duckdb_type(STAGE_RUNS.field("metered").type) == "BOOLEAN"


def test_a_field_added_to_the_record_is_a_column_and_metadata_can_type_it():
    wider = dataclasses.make_dataclass(
        "Wider", [("gpu_s", "float | None", dataclasses.field(default=None)),
                  ("gpu_count", "int | None", dataclasses.field(default=None, metadata={"arrow": pa.int32()})),
                  ("notes", "list[dict]", dataclasses.field(default_factory=list, metadata={"column": False}))],
        bases=(StageRecord,), frozen=True, kw_only=True)
    derived = columns(wider)
    assert derived[:len(STAGE_RUNS)] == [(f.name, f.type) for f in STAGE_RUNS]
    assert derived[len(STAGE_RUNS):] == [("gpu_s", pa.float64()), ("gpu_count", pa.int32())]


def test_a_field_without_a_store_type_is_refused_not_left_out():
    odd = dataclasses.make_dataclass("Odd", [("when", datetime | int | None, dataclasses.field(default=None))],
                                     bases=(StageRecord,), frozen=True, kw_only=True)
    with pytest.raises(TypeError, match="Odd.when: no store type"):
        columns(odd)
