"""A stage record into the store, and the one way to build the record of a stage that did not finish.

Every record goes straight from the process that ran (or reaped) the stage into `stage_runs` (and its
per-level quality into `quality_levels`): there is no hand-off file a later process must commit, so
no record waits on a hook that may never run.

Failed, breaking-point, interrupted and died records are built in several places (the metered run,
the Dagster failure hook for a step that failed before it was measured, the reaper for a dead stage
or a run killed between stages, a shard's dead attempt); `unfinished_record` is the one constructor
they share, so they carry the same columns the same way. No Dagster here.
"""

from __future__ import annotations

import uuid
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from kura_perf.store.quality_levels import store_rows
from kura_perf.store.record import StageRecord
from kura_perf.store.writer import write_record, write_records

# The statuses a record of a stage that did not finish may have.
UNFINISHED = ("failed", "breaking_point", "interrupted", "died")
MESSAGE_LIMIT = 2000


def write_stage_record(metrics_dir: Path, record: StageRecord) -> None:
    """A stage record into stage_runs, and its per-level quality (if any) into quality_levels: the one
    place a StageRecord becomes a plain row."""

    write_record(metrics_dir, "stage_runs", record.as_row())
    if record.quality_levels:
        write_records(metrics_dir, "quality_levels", store_rows(record, record.quality_levels))


def unfinished_record(identity: dict[str, Any], *, status: str, error_type: str, error_message: str,
                      started_at: datetime | None = None, finished_at: datetime | None = None,
                      record_id: str | None = None, **figures: Any) -> StageRecord:
    """The record of a stage that did not finish.

    identity: the columns known before the stage started (run id, stage, partition, host, ...);
    figures: whatever was measured before it stopped (wall_s, peak_rss_mb, a projection, ...). Times
    default to now, wall_s to the time between them; the message is cut to what the store keeps.
    An unknown field name is an error (StageRecord.from_dict)."""
    if status not in UNFINISHED:
        raise ValueError(f"unfinished_record: status {status!r} is not one of {UNFINISHED}")
    now = datetime.now(timezone.utc)
    started_at = started_at or now
    finished_at = finished_at or now
    figures.setdefault("wall_s", max((finished_at - started_at).total_seconds(), 0.0))
    return StageRecord.from_dict({
        **identity,
        "record_id": record_id or uuid.uuid4().hex,
        "status": status,
        "error_type": error_type,
        "error_message": (error_message or "")[:MESSAGE_LIMIT],
        "started_at": started_at,
        "finished_at": finished_at,
        **figures,
    })
