"""Finding stage records: the one a check is about, and the history it is compared with.

Within a run, a stage's record sits in the pending folder until the stage's hook moves it into the
store; a check may run on either side of that move, so both places are looked at.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pandas as pd

from kura_perf.config import Paths
from kura_perf.store import query

# How many comparable runs make a stage's history: the regression check's noise band and the baselines view.
HISTORY_RUNS = 10


def _clean(value):
    """Store rows come back with NaN/NaT for nulls and numpy scalars; records use None and Python types."""
    if value is None or value is pd.NaT:
        return None
    if isinstance(value, float) and math.isnan(value):
        return None
    if hasattr(value, "item") and not isinstance(value, (list, tuple)) and getattr(value, "ndim", 0) == 0:
        value = value.item()
        return None if isinstance(value, float) and math.isnan(value) else value
    return value


def frame_records(frame: pd.DataFrame) -> list[dict]:
    return [{k: _clean(v) for k, v in row.items()} for row in frame.to_dict("records")]


def pending_record(paths: Paths, run_id: str, stage: str) -> dict | None:
    from kura_perf.store.pending import _load  # the pending folder's own reader (timestamps)

    path = Path(paths.pending) / run_id / f"{stage}.json"
    if not path.is_file():
        return None
    try:
        return _load(path)
    except (OSError, json.JSONDecodeError):  # moved by the hook while we read it
        return None


def stored_record(paths: Paths, run_id: str, stage: str) -> dict | None:
    rows = query(paths.metrics, "SELECT * FROM stage_runs WHERE run_id = ? AND stage = ? "
                                "ORDER BY finished_at DESC LIMIT 1", [run_id, stage])
    return frame_records(rows)[0] if len(rows) else None


def latest_record(paths: Paths, stage: str, profile: str, scale: str) -> dict | None:
    """The newest successful record of a stage for a partition (any run, any host)."""
    rows = query(paths.metrics, "SELECT * FROM stage_runs WHERE stage = ? AND profile = ? AND scale = ? "
                                "AND status = 'success' ORDER BY finished_at DESC LIMIT 1", [stage, profile, scale])
    return frame_records(rows)[0] if len(rows) else None


def find_stage_record(paths: Paths, run_id: str, stage: str, profile: str | None = None,
                      scale: str | None = None) -> dict | None:
    """The stage's record for this run (pending folder, then store). A check re-run on its own
    (a run that did not materialize the stage) falls back to the partition's latest record."""
    record = pending_record(paths, run_id, stage) or stored_record(paths, run_id, stage)
    if record is None and profile and scale:
        record = latest_record(paths, stage, profile, scale)
    return record


def record_levels(paths: Paths, record: dict) -> list[dict]:
    """The per-level quality rows of a stage record: carried by a pending record, else from the store."""
    if record.get("quality_levels"):
        return list(record["quality_levels"])
    if not record.get("record_id"):
        return []
    rows = query(paths.metrics, "SELECT * FROM quality_levels WHERE record_id = ? ORDER BY level",
                 [record["record_id"]])
    return frame_records(rows)


def run_records(paths: Paths, run_id: str) -> list[dict]:
    return frame_records(query(paths.metrics, "SELECT * FROM stage_runs WHERE run_id = ?", [run_id]))


def metric_history(paths: Paths, record: dict, metric: str, limit: int = 10) -> list[float]:
    """`metric` of the last `limit` successful earlier runs of the same stage, scale, profile hash and
    host fingerprint (and metering mode, which changes timings), newest first."""
    if metric not in ("wall_s", "peak_rss_mb", "cpu_user_s", "items_per_s", "bytes_written"):
        raise ValueError(f"not a comparable metric: {metric}")
    sql = f"""
        SELECT "{metric}" AS v FROM stage_runs
        WHERE status = 'success' AND stage = ? AND scale = ? AND profile_hash IS NOT DISTINCT FROM ?
          AND host_fingerprint IS NOT DISTINCT FROM ? AND coalesce(metered, true) = ?
          AND run_id <> ? AND "{metric}" IS NOT NULL AND finished_at < ?
        ORDER BY finished_at DESC LIMIT {int(limit)}"""
    rows = query(paths.metrics, sql, [record["stage"], record["scale"], record.get("profile_hash"),
                                      record.get("host_fingerprint"), bool(record.get("metered", True)),
                                      record["run_id"], _timestamp(record.get("finished_at"))])
    return [float(v) for v in rows["v"].tolist()]


def run_metric(paths: Paths, run_id: str, record: dict, metric: str) -> float | None:
    """`metric` of the same stage in run `run_id` (a pinned baseline), if comparable with `record`."""
    rows = query(paths.metrics, f'SELECT "{metric}" AS v, profile_hash FROM stage_runs WHERE run_id = ? '
                                "AND stage = ? AND status = 'success' ORDER BY finished_at DESC LIMIT 1",
                 [run_id, record["stage"]])
    if not len(rows) or rows["profile_hash"][0] != record.get("profile_hash"):
        return None
    return _clean(rows["v"][0])


def _timestamp(value):
    if value is None:
        return pd.Timestamp.now(tz="UTC")
    return pd.Timestamp(value) if pd.Timestamp(value).tzinfo else pd.Timestamp(value).tz_localize("UTC")
