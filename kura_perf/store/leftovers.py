"""Records left in metrics_pending/ by earlier versions of kura_perf.

Earlier versions handed each record from the stage to a Dagster hook through a file in
root/metrics_pending/<run_id>/<stage>.json and committed files stranded by a dead process later.
Records now go straight into the store, so nothing writes that folder any more; an old data root may
still hold a few files. `kura-perf db` commits them once (then the folder is empty and removed);
every other command ignores the folder."""

from __future__ import annotations

from pathlib import Path

from kura_perf.files.atomic import claim, publish
from kura_perf.store.quarantine import quarantine
from kura_perf.store.record import StageRecord
from kura_perf.store.stage_records import write_stage_record

FOLDER = "metrics_pending"


def commit_leftovers(root: Path, metrics_dir: Path, skip=lambda run_id: False) -> int:
    """Commit the old hand-off files under root/metrics_pending into the store; returns how many.
    skip(run_id): True for a run still alive (an old-version process may still commit its own). Each
    file is claimed by a rename first, so two processes never commit one twice; an unreadable file
    is quarantined with a warning, never fatal."""
    folder = Path(root) / FOLDER
    count = 0
    for path in sorted(folder.glob("*/*.json")):
        if skip(path.parent.name):
            continue
        claimed = claim(path, "claimed")
        if claimed is None:
            continue  # another process took it
        try:
            record = StageRecord.from_json(claimed.read_text())
        except (OSError, ValueError) as exc:
            quarantine(claimed, Path(root), f"unreadable pending record ({exc})")
            continue
        try:
            write_stage_record(metrics_dir, record)
        except BaseException:
            publish(claimed, path, durable=False)  # leave it for the next try
            raise
        claimed.unlink(missing_ok=True)
        count += 1
    for run_dir in sorted(folder.glob("*")):
        try:
            run_dir.rmdir()
        except OSError:
            pass
    try:
        folder.rmdir()
    except OSError:
        pass
    return count
