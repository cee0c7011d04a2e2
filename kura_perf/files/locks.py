"""Advisory file locks (fcntl.flock) between kura_perf processes on one host.

Used where two processes would otherwise race: creating and migrating a fresh Dagster instance, and
writing (exclusive) or reading (shared) one stage's output files of one partition. The kernel drops
a flock when its process dies, so a killed run never leaves a lock behind.
"""

from __future__ import annotations

import fcntl
import os
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def file_lock(path: str | os.PathLike, shared: bool = False):
    """Hold an exclusive (or shared) lock on `path` (created if needed) for the with-block."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_SH if shared else fcntl.LOCK_EX)
        yield
    finally:
        try:
            fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            os.close(fd)
