"""Pinned baselines: a run chosen as the reference for its partition and host.

Pins are rows in the append-only baseline_pins table (action pin or clear); the latest action per
(profile, scale, host) wins, so history of who pinned what is kept and nothing is ever rewritten.
Without an active pin, the regression check uses the rolling history.
"""

from __future__ import annotations

from datetime import datetime, timezone

import pandas as pd

from kura_perf.checks.records import HISTORY_RUNS, run_records
from kura_perf.errors import KuraPerfError
from kura_perf.meter.host import host_info
from kura_perf.settings.paths import Paths
from kura_perf.store import query, write_record
from kura_perf.store.writer import new_record_id

_LATEST = """
    SELECT * EXCLUDE (rn) FROM (
        SELECT *, row_number() OVER (PARTITION BY profile, scale, host_fingerprint
                                     ORDER BY pinned_at DESC, record_id DESC) AS rn
        FROM baseline_pins)
    WHERE rn = 1"""


def active_pins(paths: Paths, profile: str | None = None, scale: str | None = None) -> pd.DataFrame:
    """Active pins (latest action is 'pin'): profile, scale, host_fingerprint, run_id, pinned_at."""
    sql = f"SELECT profile, scale, host_fingerprint, run_id, pinned_at FROM ({_LATEST}) WHERE action = 'pin'"
    params = []
    for column, value in (("profile", profile), ("scale", scale)):
        if value:
            sql += f" AND {column} = ?"
            params.append(value)
    return query(paths.metrics, sql + " ORDER BY profile, scale, host_fingerprint", params)


def active_pin(paths: Paths, profile: str | None, scale: str | None, host_fingerprint: str | None) -> str | None:
    """The pinned run id for this partition and host, or None (rolling history)."""
    rows = query(paths.metrics, f"SELECT action, run_id FROM ({_LATEST}) WHERE profile = ? AND scale = ? "
                                "AND host_fingerprint IS NOT DISTINCT FROM ?", [profile, scale, host_fingerprint])
    if not len(rows) or rows["action"][0] != "pin":
        return None
    return rows["run_id"][0]


def pin(paths: Paths, run_id: str) -> dict:
    """Pin a run (all its successful stage records) as the baseline of its partition and host."""
    records = [r for r in run_records(paths, run_id) if r.get("status") == "success"]
    if not records:
        raise KuraPerfError(f"run {run_id} has no successful stage records in {paths.metrics}")
    keys = {(r["profile"], r["scale"], r.get("host_fingerprint")) for r in records}
    if len(keys) > 1:
        raise KuraPerfError(f"run {run_id} spans several partitions/hosts {sorted(map(str, keys))}")
    profile, scale, host = keys.pop()
    row = {"record_id": new_record_id(), "pinned_at": datetime.now(timezone.utc), "action": "pin",
           "run_id": run_id, "profile": profile, "scale": scale, "host_fingerprint": host}
    write_record(paths.metrics, "baseline_pins", row)
    return row


def clear(paths: Paths, profile: str, scale: str, host_fingerprint: str | None = None) -> dict:
    """Back to the rolling history for this partition on this host (default: the current host)."""
    if host_fingerprint is None:
        host_fingerprint = host_info()["host_fingerprint"]
    row = {"record_id": new_record_id(), "pinned_at": datetime.now(timezone.utc), "action": "clear",
           "run_id": None, "profile": profile, "scale": scale, "host_fingerprint": host_fingerprint}
    write_record(paths.metrics, "baseline_pins", row)
    return row


def show(paths: Paths, profile: str | None = None, scale: str | None = None) -> pd.DataFrame:
    """Per partition, stage and host: the baseline in force (pinned run or rolling history), with
    the rolling history's size and median time and memory, as the regression check sees them."""
    where, params = ["status = 'success'"], []
    for column, value in (("profile", profile), ("scale", scale)):
        if value:
            where.append(f"{column} = ?")
            params.append(value)
    sql = f"""
        WITH pins AS ({_LATEST}),
        ranked AS (
            SELECT *, row_number() OVER (PARTITION BY profile, scale, stage, host_fingerprint, profile_hash
                                         ORDER BY finished_at DESC) AS rn
            FROM stage_runs WHERE {' AND '.join(where)})
        SELECT r.profile, r.scale, r.stage, r.host_fingerprint, r.profile_hash,
               CASE WHEN p.action = 'pin' THEN 'pinned ' || p.run_id ELSE 'rolling' END AS baseline,
               count(*) AS runs, median(r.wall_s) AS median_wall_s, min(r.wall_s) AS min_wall_s,
               max(r.wall_s) AS max_wall_s, median(r.peak_rss_mb) AS median_peak_rss_mb,
               max(r.finished_at) AS last_run
        FROM ranked r LEFT JOIN pins p
          ON p.profile = r.profile AND p.scale = r.scale AND p.host_fingerprint IS NOT DISTINCT FROM r.host_fingerprint
        WHERE r.rn <= {HISTORY_RUNS}
        GROUP BY ALL ORDER BY r.profile, r.scale, r.stage"""
    return query(paths.metrics, sql, params)
