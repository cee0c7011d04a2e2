"""The CI gate: did the latest run(s) fail their regression checks? `kura-perf checks` exits 1 if so.

The checks themselves run inside the Dagster runs (asset checks) and land in check_results; this only
reads them back, so a nightly workflow can fail on a regression without parsing logs. When a check was
evaluated more than once for the same stage record (a check re-run from the UI), the newest outcome counts.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from kura_perf.errors import KuraPerfError
from kura_perf.store import query

KINDS = {
    "regression": "check_name LIKE 'regression%'",
    "error": "severity = 'ERROR'",  # regression, sanity and quality: everything that turns a check red
}


@dataclass
class GateResult:
    runs: list[str]
    checked: int  # outcomes considered
    failures: pd.DataFrame

    @property
    def passed(self) -> bool:
        return self.failures.empty


def evaluate_gate(metrics_dir: Path, run_ids: list[str] | None = None, since: str | None = None,
                  kind: str = "regression") -> GateResult:
    """Outcomes of the given runs, of the runs checked since `since` (ISO time), or else of the run checked last."""
    if kind not in KINDS:
        raise KuraPerfError(f"--kind: '{kind}'; expected one of {', '.join(KINDS)}")
    latest = """SELECT * EXCLUDE (rn) FROM (
                    SELECT *, row_number() OVER (PARTITION BY stage_record_id, check_name ORDER BY checked_at DESC) rn
                    FROM check_results) WHERE rn = 1"""
    if run_ids:
        where, params = "run_id IN (SELECT unnest(?))", [list(run_ids)]
    elif since:
        try:
            stamp = pd.Timestamp(since)
        except ValueError:
            raise KuraPerfError(f"--since: '{since}' is not a time (e.g. 2026-01-31T02:00:00Z)") from None
        stamp = stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp
        where, params = "checked_at >= ?", [stamp.to_pydatetime()]
    else:
        where = "run_id = (SELECT run_id FROM check_results ORDER BY checked_at DESC LIMIT 1)"
        params = []
    rows = query(metrics_dir, f"SELECT * FROM ({latest}) WHERE {where} AND {KINDS[kind]} ORDER BY checked_at",
                 params)
    if rows.empty:
        scope = f"runs {', '.join(run_ids)}" if run_ids else (f"since {since}" if since else "any run")
        raise KuraPerfError(f"no {kind} check results for {scope} in {metrics_dir}: did the runs happen? "
                            "(checks are recorded when stage assets are materialized with their checks)")
    failures = rows[~rows["passed"].astype(bool)]
    cols = ["run_id", "profile", "scale", "stage", "check_name", "value", "baseline", "ratio", "message"]
    return GateResult(sorted(rows["run_id"].dropna().unique()), len(rows), failures[cols].reset_index(drop=True))
