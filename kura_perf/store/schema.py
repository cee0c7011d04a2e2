"""The columns of every table in the metrics store. One place, so writers and views agree."""

from __future__ import annotations

import pyarrow as pa

from kura_perf.store.record import TIMESTAMP, StageRecord, columns

_TS = TIMESTAMP

# Every table's first column, in every version of the store: a Parquet file without it is no record
# file (store/validation.py quarantines it instead of reading it in as rows of NULLs).
KEY_COLUMN = "record_id"

# Which run, code and host a record comes from: every table carries these columns (the comparability
# fields of StageRecord, in their order: run_id, code_version, package_versions, kura_version,
# host_fingerprint, host_cpu, host_cores, host_ram_gb, host_os).
COMPARABILITY = columns(StageRecord, comparability=True)

# One row per stage run: the column fields of StageRecord, in field order, typed by their annotations
# (store/record.py; the comments on the fields say what the columns hold). The frozen list of the columns
# already on disk is in kura_perf_tests/test_store_schema.py: a derived schema that differs fails there.
STAGE_RUNS = pa.schema(columns(StageRecord))

# One row per shard of a fanned-out stage (embeddings on a cluster): the stage's own record in
# stage_runs sums these (wall = critical path, CPU = sum). status 'died' = an attempt whose worker
# was lost mid-step (found by the retry).
SHARD_RUNS = pa.schema([
    *STAGE_RUNS,
    ("shard_index", pa.int64()),
    ("shard_count", pa.int64()),
    ("row_start", pa.int64()),
    ("row_stop", pa.int64()),
    ("attempt_id", pa.string()),
])

CHECK_RESULTS = pa.schema([
    ("record_id", pa.string()),
    ("checked_at", _TS),
    ("check_name", pa.string()),  # regression_stage_work_s | regression_peak_rss_mb | budget_* | sanity | quality
    ("stage", pa.string()),
    ("profile", pa.string()),
    ("profile_hash", pa.string()),
    ("scale", pa.string()),
    ("passed", pa.bool_()),
    ("severity", pa.string()),  # WARN | ERROR
    ("value", pa.float64()),
    ("baseline", pa.float64()),
    ("ratio", pa.float64()),
    ("noise_low", pa.float64()),
    ("noise_high", pa.float64()),
    ("samples", pa.int64()),
    ("message", pa.string()),
    ("stage_record_id", pa.string()),
    *COMPARABILITY,
])

ALERTS = pa.schema([
    ("record_id", pa.string()),
    ("raised_at", _TS),
    ("kind", pa.string()),
    ("stage", pa.string()),
    ("profile", pa.string()),
    ("scale", pa.string()),
    ("message", pa.string()),
    ("check_record_id", pa.string()),
    ("delivered_to", pa.string()),
    ("run_id", pa.string()),
])

SWEEP_RESULTS = pa.schema([
    ("record_id", pa.string()),
    ("run_id", pa.string()),
    ("recorded_at", _TS),
    ("profile", pa.string()),
    ("scale", pa.string()),
    ("stage", pa.string()),  # summaries | embeddings
    ("concurrency", pa.int64()),
    ("items", pa.int64()),
    ("wall_s", pa.float64()),
    ("items_per_min", pa.float64()),
    ("latency_p50_ms", pa.float64()),
    ("latency_p95_ms", pa.float64()),
    ("latency_p99_ms", pa.float64()),
    ("api_calls", pa.int64()),
    ("api_429s", pa.int64()),
    ("share_429", pa.float64()),
    ("api_retries", pa.int64()),
    ("api_errors", pa.int64()),
    ("tokens_in", pa.int64()),
    ("tokens_out", pa.int64()),
    ("cost_usd", pa.float64()),
    ("cost_per_1k_conversations", pa.float64()),
    ("status", pa.string()),
    ("error_message", pa.string()),
    ("host_fingerprint", pa.string()),
    ("code_version", pa.string()),
    # The server's limits as its headers reported them, what the level achieved, and the share of the
    # binding one (burst-corrected: see kura_perf/experiments/sweep.py limit_share).
    ("rpm_limit", pa.float64()),
    ("tpm_limit", pa.float64()),
    ("requests_per_min", pa.float64()),
    ("tokens_per_min", pa.float64()),
    ("binding_limit", pa.string()),  # requests | tokens
    ("limit_share", pa.float64()),
])

BASELINE_PINS = pa.schema([
    ("record_id", pa.string()),
    ("pinned_at", _TS),
    ("action", pa.string()),  # pin | clear
    ("run_id", pa.string()),
    ("profile", pa.string()),
    ("scale", pa.string()),
    ("host_fingerprint", pa.string()),
])

# One row per stress scenario run (`kura-perf stress`, the Dagster `stress` group): what was done to the
# pipelines and what survived. run_id (in COMPARABILITY) is the stress run, shared by its scenarios.
STRESS_RESULTS = pa.schema([
    ("record_id", pa.string()),
    ("scenario", pa.string()),  # memory_exhaustion | disk_full | network_interruption | rate_limit_storm | concurrent_pipelines
    ("parameters", pa.string()),  # JSON: the scenario's settings (cap, size, outage, rpm, pipelines, scale, stages)
    ("outcome", pa.string()),  # survived | failed_cleanly | lost_data
    ("exit_code", pa.int64()),  # the first non-zero exit code of its pipelines, else 0 (negative: a signal)
    ("pipelines", pa.int64()),
    ("records_expected", pa.int64()),  # stage records the pipelines should have left
    ("records_found", pa.int64()),
    ("orphans", pa.int64()),  # temp files and stranded pending records left in the home
    ("partial_outputs", pa.int64()),  # stage manifests whose files are missing or of the wrong size
    ("wrong_figures", pa.int64()),  # success records whose bytes_written disagrees with the files on disk
    ("tracebacks", pa.int64()),  # pipelines whose output ended in a bare traceback
    ("cap_method", pa.string()),  # how the fault was applied: cgroup v2 memory.max, RLIMIT_AS, tmpfs, ...
    ("message", pa.string()),
    ("wall_s", pa.float64()),
    ("peak_rss_mb", pa.float64()),  # the largest pipeline process's ru_maxrss
    ("started_at", _TS),
    ("finished_at", _TS),
    ("scale", pa.string()),
    ("profile", pa.string()),
    ("home", pa.string()),  # the scenario's scratch folder (logs and records kept there)
    *COMPARABILITY,
])

# Kura's checkpoint managers (kura-perf checkpoints): one row per format x scale x kind.
CHECKPOINT_RESULTS = pa.schema([
    ("record_id", pa.string()),
    ("recorded_at", _TS),
    ("format", pa.string()),  # jsonl | parquet | hf_datasets
    ("manager_class", pa.string()),  # Kura's class
    ("scale", pa.string()),
    ("scale_n", pa.int64()),
    ("kind", pa.string()),  # conversations | summaries | clusters | projected_clusters | all (worker died)
    ("items", pa.int64()),
    ("status", pa.string()),  # success | lossy (reloaded, but not equal) | failed
    ("error_message", pa.string()),
    ("write_s", pa.float64()),
    ("write_rss_start_mb", pa.float64()),
    ("write_peak_rss_mb", pa.float64()),
    ("write_error", pa.string()),
    ("read_status", pa.string()),  # success | lossy | failed | skipped
    ("read_s", pa.float64()),
    ("read_rss_start_mb", pa.float64()),
    ("read_peak_rss_mb", pa.float64()),
    ("read_error", pa.string()),
    ("items_read", pa.int64()),
    ("roundtrip_equal", pa.float64()),  # share of items whose model_dump equals the saved one
    ("bytes", pa.int64()),  # bytes this kind added to the checkpoint folder
    ("dir_du_bytes", pa.int64()),  # `du -sb` of the whole folder after all kinds (independent check)
    ("process_max_rss_mb", pa.float64()),  # the worker's RSS sampled by the parent, max (independent check)
    *COMPARABILITY,
])

# Time to a first working pipeline (kura-perf onboarding): one row per attempt.
ONBOARDING_RUNS = pa.schema([
    ("record_id", pa.string()),
    ("recorded_at", _TS),
    ("status", pa.string()),  # success | failed
    ("failed_step", pa.string()),
    ("error_message", pa.string()),
    ("venv_s", pa.float64()),
    ("install_s", pa.float64()),
    ("import_s", pa.float64()),
    ("first_result_s", pa.float64()),
    ("total_s", pa.float64()),
    ("install_spec", pa.string()),  # what pip installed, e.g. kura==0.5.4
    ("installed_kura", pa.string()),  # the version the fresh venv ended up with
    ("reused_packages", pa.bool_()),  # True = the cheap path (tests: this env's packages), not a fresh install
    ("pip_cache", pa.bool_()),
    ("venv_bytes", pa.int64()),
    ("example", pa.string()),
    ("conversations", pa.int64()),
    ("clusters_printed", pa.int64()),
    ("api_calls", pa.int64()),  # simulator request log during the first result
    *COMPARABILITY,
])

# Kura's error messages for bad inputs (kura-perf error-clarity): one row per catalogue case.
ERROR_CLARITY = pa.schema([
    ("record_id", pa.string()),
    ("recorded_at", _TS),
    ("case_id", pa.string()),
    ("category", pa.string()),  # input | configuration | api | checkpoint | clustering
    ("description", pa.string()),
    ("kura_call", pa.string()),
    ("outcome", pa.string()),  # error | silent (logged, returned nothing) | accepted | hang
    ("error_type", pa.string()),
    ("error_message", pa.string()),
    ("raised_in", pa.string()),  # module of the innermost traceback frame
    ("wall_s", pa.float64()),
    ("timeout_s", pa.float64()),
    ("names_subject", pa.bool_()),
    ("says_expected", pa.bool_()),
    ("suggests_fix", pa.bool_()),
    ("raw_traceback", pa.bool_()),
    ("score", pa.int64()),  # 0-4, see kura_perf/experiments/usability/error_grading.py
    ("grade", pa.string()),  # clear | partial | poor | silent | hang
    *COMPARABILITY,
])

# Clustering quality per hierarchy level (0 = base clusters) and truth level, one row per (level, truth
# level) of a clusters or meta_clusters stage record (record_id = that record's). truth_level names the
# field holding the truth ('topic', 'metadata.domain'; profile key truth_levels), truth_rank orders them
# (0 = coarsest), true_classes is its class count. is_topic_level marks, per truth level, the level whose
# cluster count is nearest the class count (the one ARI/NMI are fair for); homogeneity is the fair figure
# for finer levels. Written by the same hook as the stage record. Rows written before truth levels
# existed read as truth_level 'topic', rank 0, true_classes = true_topics (COLUMN_DEFAULTS).
QUALITY_LEVELS = pa.schema([
    ("record_id", pa.string()),
    ("stage", pa.string()),
    ("backend", pa.string()),
    ("profile", pa.string()),
    ("profile_hash", pa.string()),
    ("scale", pa.string()),
    ("scale_n", pa.int64()),
    ("finished_at", _TS),
    ("level", pa.int64()),
    ("n_clusters", pa.int64()),
    ("noise_share", pa.float64()),
    ("true_topics", pa.int64()),  # = true_classes (kept for readers of the first rows)
    ("truth_level", pa.string()),
    ("truth_rank", pa.int64()),
    ("true_classes", pa.int64()),
    ("ari", pa.float64()),
    ("nmi", pa.float64()),
    ("homogeneity", pa.float64()),
    ("completeness", pa.float64()),
    ("topics_found", pa.float64()),  # share of true topics whose majority cluster is mostly that topic
    ("silhouette", pa.float64()),  # cosine, on a seeded sample of at most 5000 clustered rows
    ("is_topic_level", pa.bool_()),
    *COMPARABILITY,
])

TABLES: dict[str, pa.Schema] = {
    "stage_runs": STAGE_RUNS,
    "shard_runs": SHARD_RUNS,
    "check_results": CHECK_RESULTS,
    "alerts": ALERTS,
    "sweep_results": SWEEP_RESULTS,
    "baseline_pins": BASELINE_PINS,
    "stress_results": STRESS_RESULTS,
    "checkpoint_results": CHECKPOINT_RESULTS,
    "onboarding_runs": ONBOARDING_RUNS,
    "error_clarity": ERROR_CLARITY,
    "quality_levels": QUALITY_LEVELS,
}

# SQL for a column's value in rows written before the column existed (views.py), instead of NULL.
COLUMN_DEFAULTS: dict[str, dict[str, str]] = {
    "quality_levels": {"truth_level": "'topic'", "truth_rank": "0", "true_classes": "true_topics"},
}

_DUCK = {
    pa.string(): "VARCHAR", pa.int64(): "BIGINT", pa.float64(): "DOUBLE", pa.bool_(): "BOOLEAN",
    _TS: "TIMESTAMPTZ", pa.list_(pa.float64()): "DOUBLE[]",
}


def duckdb_type(t: pa.DataType) -> str:
    return _DUCK[t]
