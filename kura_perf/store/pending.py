"""The hand-off from an asset body (which measures) to its hook (which records), within one run.

The body saves its finished record here, success or failure; the hook moves it into the store.
If a process dies between the two, `recover` later moves stranded records into the store, so a
record is never lost, only late."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path

from kura_perf.atomic import atomic_write_text, claim, publish
from kura_perf.store.quarantine import quarantine
from kura_perf.store.writer import write_record, write_records

_TIMESTAMPS = ("started_at", "finished_at")


def _path(pending_dir: Path, run_id: str, stage: str) -> Path:
    return Path(pending_dir) / run_id / f"{stage}.json"


def save_pending(pending_dir: Path, record: dict) -> Path:
    path = _path(pending_dir, record["run_id"], record["stage"])
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, json.dumps(record, default=_json_default))
    return path


def _json_default(value):
    return value.isoformat() if isinstance(value, datetime) else str(value)


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


def recover(pending_dir: Path, metrics_dir: Path, skip=lambda run_id, stage: False) -> int:
    """Commit records stranded by a process that died before its hook ran. skip(run_id, stage): True
    for records whose run is still alive (its own hook will commit them). Each file is claimed by a
    rename first, so two processes recovering at once never commit a record twice. An unreadable
    pending file is quarantined with a warning, never fatal."""
    count = 0
    for path in sorted(Path(pending_dir).glob("*/*.json")):
        if skip(path.parent.name, path.stem):
            continue
        claimed = claim(path, "claimed")
        if claimed is None:
            continue  # another process took it
        try:
            record = _load(claimed)
        except (OSError, ValueError) as exc:
            quarantine(claimed, Path(pending_dir).parent, f"unreadable pending record ({exc})")
            continue
        try:
            write_stage_record(metrics_dir, record)
        except BaseException:
            publish(claimed, path, durable=False)  # leave it for the next try
            raise
        claimed.unlink(missing_ok=True)
        try:
            path.parent.rmdir()
        except OSError:
            pass
        count += 1
    return count
