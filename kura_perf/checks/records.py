"""Finding stage records: the one a check is about, and the history it is compared with.

A stage writes its record into the store as it ends, before its checks run, so the store is the one
place to look. The one record a check is about is a StageRecord; the history stays rows and columns
(DuckDB).
"""

from __future__ import annotations

import json

import pandas as pd

from kura_perf.settings.paths import Paths
from kura_perf.store import query
from kura_perf.store.record import StageRecord, clean_value

# How many comparable runs make a stage's history: the regression check's noise band and the baselines view.
HISTORY_RUNS = 10


def frame_records(frame: pd.DataFrame) -> list[dict]:
    """Rows of any table with None for nulls and Python values."""
    return [{k: clean_value(v) for k, v in row.items()} for row in frame.to_dict("records")]


def _first_record(rows: pd.DataFrame) -> StageRecord | None:
    return StageRecord.from_row(rows.to_dict("records")[0]) if len(rows) else None


def stored_record(paths: Paths, run_id: str, stage: str) -> StageRecord | None:
    return _first_record(query(paths.metrics, "SELECT * FROM stage_runs WHERE run_id = ? AND stage = ? "
                                              "ORDER BY finished_at DESC LIMIT 1", [run_id, stage]))


def latest_record(paths: Paths, stage: str, profile: str, scale: str) -> StageRecord | None:
    """The newest successful record of a stage for a partition (any run, any host)."""
    return _first_record(query(paths.metrics, "SELECT * FROM stage_runs WHERE stage = ? AND profile = ? AND scale = ? "
                                              "AND status = 'success' ORDER BY finished_at DESC LIMIT 1",
                               [stage, profile, scale]))


def find_stage_record(paths: Paths, run_id: str, stage: str, profile: str | None = None,
                      scale: str | None = None) -> StageRecord | None:
    """The stage's record for this run, from the store. A check re-run on its own
    (a run that did not materialize the stage) falls back to the partition's latest record."""
    record = stored_record(paths, run_id, stage)
    if record is None and profile and scale:
        record = latest_record(paths, stage, profile, scale)
    return record


def record_levels(paths: Paths, record: StageRecord) -> list[dict]:
    """The per-level quality rows of a stage record: those it carries (a fresh record), else from the store."""
    if record.quality_levels:
        return list(record.quality_levels)
    if not record.record_id:
        return []
    rows = query(paths.metrics, "SELECT * FROM quality_levels WHERE record_id = ? ORDER BY level",
                 [record.record_id])
    return frame_records(rows)


def run_records(paths: Paths, run_id: str) -> list[dict]:
    return frame_records(query(paths.metrics, "SELECT * FROM stage_runs WHERE run_id = ?", [run_id]))


def metric_history(paths: Paths, record: StageRecord, metric: str, limit: int = 10) -> list[float]:
    """`metric` of the last `limit` successful earlier runs of the same stage, scale, profile hash and
    host fingerprint (and metering mode, which changes timings; and shard count: a stage fanned out
    over K cluster workers is not comparable with an in-process one), newest first."""
    column = _column(metric)
    sql = f"""
        SELECT {column} AS v FROM stage_runs
        WHERE status = 'success' AND stage = ? AND scale = ? AND profile_hash IS NOT DISTINCT FROM ?
          AND host_fingerprint IS NOT DISTINCT FROM ? AND coalesce(metered, true) = ?
          AND run_id <> ? AND {column} IS NOT NULL AND finished_at < ?
          AND coalesce(CAST(json_extract(extra, '$.shards') AS BIGINT), 0) = ?
        ORDER BY finished_at DESC LIMIT {int(limit)}"""
    metered = True if record.metered is None else record.metered
    rows = query(paths.metrics, sql, [record.stage, record.scale, record.profile_hash, record.host_fingerprint,
                                      metered, record.run_id, _timestamp(record.finished_at), _shards(record)])
    return [float(v) for v in rows["v"].tolist()]


COMPARABLE_METRICS = ("stage_work_s", "wall_s", "peak_rss_mb", "cpu_user_s", "items_per_s", "bytes_written")


def _column(metric: str) -> str:
    """The SQL for a comparable metric; the work time of a record from before the compile/start-up
    split (stage_work_s NULL) is its wall time, so an old history stays usable."""
    if metric not in COMPARABLE_METRICS:
        raise ValueError(f"not a comparable metric: {metric}")
    return "coalesce(stage_work_s, wall_s)" if metric == "stage_work_s" else f'"{metric}"'


def _shards(record: StageRecord) -> int:
    try:
        return int(json.loads(record.extra or "{}").get("shards") or 0)
    except (TypeError, ValueError, AttributeError):
        return 0


def run_metric(paths: Paths, run_id: str, record: StageRecord, metric: str) -> float | None:
    """`metric` of the same stage in run `run_id` (a pinned baseline), if comparable with `record`."""
    rows = query(paths.metrics, f'SELECT {_column(metric)} AS v, profile_hash FROM stage_runs WHERE run_id = ? '
                                "AND stage = ? AND status = 'success' ORDER BY finished_at DESC LIMIT 1",
                 [run_id, record.stage])
    if not len(rows) or rows["profile_hash"][0] != record.profile_hash:
        return None
    return clean_value(rows["v"][0])


def _timestamp(value):
    if value is None:
        return pd.Timestamp.now(tz="UTC")
    return pd.Timestamp(value) if pd.Timestamp(value).tzinfo else pd.Timestamp(value).tz_localize("UTC")
