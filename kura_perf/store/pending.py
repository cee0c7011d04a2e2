"""The hand-off from an asset body (which measures) to its hook (which records), within one run.

The body saves its finished record here, success or failure; the hook moves it into the store.
If a process dies between the two, `recover` later moves stranded records into the store, so a
record is never lost, only late."""

from __future__ import annotations

import json
import os
from datetime import datetime
from pathlib import Path

from kura_perf.store.writer import write_record, write_records

_TIMESTAMPS = ("started_at", "finished_at")


def _path(pending_dir: Path, run_id: str, stage: str) -> Path:
    return Path(pending_dir) / run_id / f"{stage}.json"


def save_pending(pending_dir: Path, record: dict) -> Path:
    path = _path(pending_dir, record["run_id"], record["stage"])
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(record, default=lambda v: v.isoformat() if isinstance(v, datetime) else str(v)))
    os.replace(tmp, path)
    return path


def _load(path: Path) -> dict:
    record = json.loads(path.read_text())
    for key in _TIMESTAMPS:
        if record.get(key):
            record[key] = datetime.fromisoformat(record[key])
    return record


def write_stage_record(metrics_dir: Path, record: dict) -> None:
    """A stage record into stage_runs, and its per-level quality (if any) into quality_levels."""
    from kura_perf.quality_levels import store_rows

    record = dict(record)
    levels = record.pop("quality_levels", None) or []
    write_record(metrics_dir, "stage_runs", record)
    if levels:
        write_records(metrics_dir, "quality_levels", store_rows(record, levels))


def commit_pending(pending_dir: Path, metrics_dir: Path, run_id: str, stage: str) -> dict | None:
    """Move one pending record into the store; None when the body saved none."""
    path = _path(pending_dir, run_id, stage)
    if not path.is_file():
        return None
    record = _load(path)
    write_stage_record(metrics_dir, record)
    path.unlink()
    try:
        path.parent.rmdir()
    except OSError:
        pass
    return record


def recover(pending_dir: Path, metrics_dir: Path) -> int:
    """Commit records stranded by a process that died before its hook ran."""
    count = 0
    for path in sorted(Path(pending_dir).glob("*/*.json")):
        write_stage_record(metrics_dir, _load(path))
        path.unlink()
        count += 1
    return count
