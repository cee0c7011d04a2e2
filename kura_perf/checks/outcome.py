"""One evaluated check, and its row in the store's check_results table."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timezone

from kura_perf.store.record import StageRecord
from kura_perf.store.schema import COMPARABILITY
from kura_perf.store.writer import new_record_id, write_records

WARN, ERROR = "WARN", "ERROR"


@dataclass
class CheckOutcome:
    """What every check returns. `name` is the check_results.check_name (e.g. regression_stage_work_s)."""

    name: str
    passed: bool
    message: str
    severity: str = WARN
    value: float | None = None
    baseline: float | None = None
    ratio: float | None = None
    noise_low: float | None = None
    noise_high: float | None = None
    samples: int | None = None
    details: dict = field(default_factory=dict)  # extra figures for the Dagster metadata

    def row(self, record: StageRecord) -> dict:
        """The check_results row for this outcome, about the stage record `record`."""
        comparability = {name: getattr(record, name) for name, _ in COMPARABILITY}
        return {
            "record_id": new_record_id(),
            "checked_at": datetime.now(timezone.utc),
            "check_name": self.name,
            "stage": record.stage,
            "profile": record.profile,
            "profile_hash": record.profile_hash,
            "scale": record.scale,
            "passed": bool(self.passed),
            "severity": self.severity,
            "value": _float(self.value),
            "baseline": _float(self.baseline),
            "ratio": _float(self.ratio),
            "noise_low": _float(self.noise_low),
            "noise_high": _float(self.noise_high),
            "samples": None if self.samples is None else int(self.samples),
            "message": self.message,
            "stage_record_id": record.record_id,
            **comparability,
        }


def _float(value) -> float | None:
    return None if value is None else float(value)


def write_outcomes(metrics_dir, record: StageRecord, outcomes: list[CheckOutcome]) -> list[dict]:
    """Append the outcomes to check_results (one file); return the rows written."""
    rows = [o.row(record) for o in outcomes]
    if rows:
        write_records(metrics_dir, "check_results", rows)
    return rows
