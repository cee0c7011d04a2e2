"""The hand-off from an asset body (which measures) to its hook (which records), within one run.

The body saves its finished record here, success or failure; the hook moves it into the store.
If a process dies between the two, `recover` later moves stranded records into the store, so a
record is never lost, only late."""

from __future__ import annotations

from pathlib import Path

from kura_perf.files.atomic import atomic_write_text, claim, publish
from kura_perf.store.quarantine import quarantine
from kura_perf.store.record import StageRecord
from kura_perf.store.writer import write_record, write_records


def _path(pending_dir: Path, run_id: str, stage: str) -> Path:
    return Path(pending_dir) / run_id / f"{stage}.json"


def save_pending(pending_dir: Path, record: StageRecord) -> Path:
    path = _path(pending_dir, record.run_id, record.stage)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, record.to_json())
    return path


def _load(path: Path) -> StageRecord:
    """A pending file's record; ValueError when it is not JSON or names a field no record has."""
    return StageRecord.from_json(path.read_text())


def write_stage_record(metrics_dir: Path, record: StageRecord) -> None:
    """A stage record into stage_runs, and its per-level quality (if any) into quality_levels: the one
    place a StageRecord becomes a plain row."""
    from kura_perf.store.quality_levels import store_rows

    write_record(metrics_dir, "stage_runs", record.as_row())
    if record.quality_levels:
        write_records(metrics_dir, "quality_levels", store_rows(record, record.quality_levels))


def commit_pending(pending_dir: Path, metrics_dir: Path, run_id: str, stage: str) -> StageRecord | None:
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
