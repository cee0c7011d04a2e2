"""Record files that cannot be read, or do not match their table's schema, are moved aside, never fatal.

One garbage or truncated Parquet file under data/metrics/ would otherwise make every query over the
store fail (DuckDB reads them all through one glob), and with it `report`, `db` and every run's
checks; so would a readable file with a wrongly typed column (store/validation.py finds those). Such
a file is moved to data/metrics_quarantine/<its path under the root>, with a warning naming it and
the reason, so the user can inspect it and the store keeps working.
"""

from __future__ import annotations

import logging
import os
import re
import time
from pathlib import Path

from kura_perf.store.readonly import file_in_store

log = logging.getLogger("kura_perf.store")

QUARANTINE = "metrics_quarantine"


def quarantine(path: Path, root: Path, reason: str, what: str = "unreadable record file") -> Path | None:
    """Move `path` (under `root`) to root/metrics_quarantine/..., warn (one line: `what`, the file, the
    reason), return the new place."""
    path, root = Path(path), Path(root)
    try:
        relative = path.resolve().relative_to(root.resolve())
    except ValueError:
        relative = Path(path.name)
    target = root / QUARANTINE / relative
    if target.exists():
        target = target.with_name(f"{target.name}.{int(time.time() * 1000)}")
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        os.replace(path, target)
    except FileNotFoundError:
        return None  # another process moved it first
    except OSError as exc:
        log.warning("%s %s (%s) could not be moved aside: %s", what, path, reason, exc)
        return None
    log.warning("quarantined %s %s -> %s: %s", what, path, target, reason)
    return target


_QUOTED_PATH = re.compile(r"""["']([^"']+\.parquet)["']""")


def file_named_in(error: BaseException, metrics_dir: Path) -> Path | None:
    """The record file a DuckDB error is about, if it names one under metrics_dir (by its path, or by
    the read-only connection's kurastore:// name for it: store/readonly.py)."""
    base = str(Path(metrics_dir).resolve())
    for candidate in _QUOTED_PATH.findall(str(error)):
        if candidate.startswith(base):
            return Path(candidate)
        if (local := file_in_store(candidate, metrics_dir)) is not None:
            return local
    return None
