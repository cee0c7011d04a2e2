"""Record files that cannot be read are moved aside, never fatal.

One garbage or truncated Parquet file under data/metrics/ would otherwise make every query over the
store fail (DuckDB reads them all through one glob), and with it `report`, `db` and every run's
checks. Such a file is moved to data/metrics_quarantine/<its path under the root>, with a warning
naming it, so the user can inspect it and the store keeps working.
"""

from __future__ import annotations

import logging
import os
import re
import time
from pathlib import Path

import pyarrow.parquet as pq

log = logging.getLogger("kura_perf.store")

QUARANTINE = "metrics_quarantine"


def quarantine(path: Path, root: Path, reason: str) -> Path | None:
    """Move `path` (under `root`) to root/metrics_quarantine/..., warn, return the new place."""
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
        log.warning("unreadable record file %s (%s) could not be moved aside: %s", path, reason, exc)
        return None
    log.warning("quarantined unreadable record file %s -> %s: %s", path, target, reason)
    return target


def check_record_files(metrics_dir: Path) -> list[Path]:
    """Read every record file's Parquet footer; quarantine those that fail. Returns the moved files."""
    metrics_dir = Path(metrics_dir)
    moved = []
    for path in sorted(metrics_dir.glob("*/date=*/*.parquet")):
        try:
            pq.read_metadata(path)
        except Exception as exc:  # noqa: BLE001 - any failure to read it is the reason to move it
            if (target := quarantine(path, metrics_dir.parent, f"{type(exc).__name__}: {exc}")) is not None:
                moved.append(target)
    return moved


_QUOTED_PATH = re.compile(r"""["']([^"']+\.parquet)["']""")


def file_named_in(error: BaseException, metrics_dir: Path) -> Path | None:
    """The record file a DuckDB error is about, if it names one under metrics_dir."""
    base = str(Path(metrics_dir).resolve())
    for candidate in _QUOTED_PATH.findall(str(error)):
        if candidate.startswith(base):
            return Path(candidate)
    return None
