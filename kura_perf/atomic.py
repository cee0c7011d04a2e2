"""The one way kura_perf writes a file that others may read: a temp file in the same folder with a name
no other process can pick (pid + uuid), flushed to disk, then renamed over the target.

Readers see the old file or the new one, never half of one; two writers of the same path never share
a temp name; a write that fails for any reason (disk full, a kill signal turned into an exception,
a bug in the writer) removes its temp file, so a full disk is not kept full by our own debris. The
size returned is the size of the file THIS call wrote (read from the temp before the rename), so
a figure never describes a file another process renamed into place a moment later.

Every rename in the package goes through here (kura_perf_tests/test_atomic_writes.py holds it so):
`atomic_write` for a file written in one go, `publish` for a temp file or folder its writer filled over
time (a stream of batches, a staged report, a checked ONNX export), `claim` for taking a file no other
process may take too (a pending record to commit, a marker to reap).
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path
from typing import Callable

TEMP_MARK = ".kp-tmp-"


def temp_name(path: Path) -> Path:
    return path.with_name(f".{path.name}{TEMP_MARK}{os.getpid()}-{uuid.uuid4().hex[:12]}")


def is_temp(path: Path) -> bool:
    return TEMP_MARK in path.name


def atomic_write(path: str | os.PathLike, write: Callable[[Path], object], durable: bool = True) -> int:
    """Call write(temp_path) to fill a temp file, fsync it, rename it to `path`; return its size in bytes.
    durable=False skips the fsyncs (heartbeats: rewritten every second, worthless after a reboot)."""
    path = Path(path)
    tmp = temp_name(path)
    try:
        write(tmp)
        with open(tmp, "rb") as f:
            if durable:
                os.fsync(f.fileno())
            size = os.fstat(f.fileno()).st_size
        publish(tmp, path, durable=False)
    except BaseException:
        try:
            tmp.unlink(missing_ok=True)
        except OSError:
            pass
        raise
    if durable:
        _fsync_dir(path.parent)
    return size


def publish(tmp: str | os.PathLike, path: str | os.PathLike, durable: bool = True) -> None:
    """Rename a finished temp file or folder to `path` (replacing a file; a folder only replaces an empty
    one), so readers see none of it or all of it. The writer fsyncs what it wrote; durable=True also
    makes the rename itself survive a crash."""
    os.replace(tmp, path)
    if durable:
        _fsync_dir(Path(path).parent)


def claim(path: str | os.PathLike, tag: str) -> Path | None:
    """Rename `path` to a sibling only this process knows (<name>.<tag>-<pid>-<random>): of several
    processes taking the same file, exactly one gets it. None when another took it first."""
    path = Path(path)
    claimed = path.with_name(f"{path.name}.{tag}-{os.getpid()}-{uuid.uuid4().hex[:6]}")
    try:
        os.replace(path, claimed)
    except FileNotFoundError:
        return None
    return claimed


def atomic_write_bytes(path: str | os.PathLike, data: bytes, durable: bool = True) -> int:
    return atomic_write(path, lambda tmp: tmp.write_bytes(data), durable)


def atomic_write_text(path: str | os.PathLike, text: str, encoding: str = "utf-8", durable: bool = True) -> int:
    return atomic_write(path, lambda tmp: tmp.write_text(text, encoding=encoding), durable)


def _fsync_dir(folder: Path) -> None:
    """Make the rename itself durable (best effort: not every filesystem allows it)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
