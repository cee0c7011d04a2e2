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
process may take too (a pending record to commit, a marker to reap), `PublishGroup` for several files
that must appear together or not at all (a stage's tables, arrays and manifest).

A write that fails because the disk is full says so, naming the file it was writing (`named_write_error`):
the libraries below us do not. Python says "[Errno 28] No space left on device" with no file name,
pyarrow "Error writing bytes to file. Detail: [errno 28] ...", numpy's np.save only
"384000 requested and 100320 written" (a short fwrite: no errno at all).
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

TEMP_MARK = ".kp-tmp-"
NO_SPACE = os.strerror(errno.ENOSPC)  # "No space left on device"
# numpy's ndarray.tofile (what np.save uses on a real file) on a short fwrite: items, not bytes, and no errno
_SHORT_WRITE = re.compile(r"^(\d+) requested and (\d+) written$")
# A short write is taken for a full disk when less than this is left on the file's filesystem after it.
_NEARLY_FULL_BYTES = 1 << 20


def temp_name(path: Path) -> Path:
    return path.with_name(f".{path.name}{TEMP_MARK}{os.getpid()}-{uuid.uuid4().hex[:12]}")


def is_temp(path: Path) -> bool:
    return TEMP_MARK in path.name


def _free_bytes(folder: Path) -> int | None:
    try:
        st = os.statvfs(folder)
    except (OSError, AttributeError):
        return None
    return st.f_bavail * st.f_frsize


def _file_size_limit() -> int | None:
    """The process's per-file size limit (RLIMIT_FSIZE) in bytes, None when unlimited."""
    try:
        import resource
    except ImportError:
        return None
    soft, _hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    return None if soft == resource.RLIM_INFINITY else soft


def is_disk_full(exc: BaseException) -> bool:
    """True for an out-of-space error however the library below put it (errno, or only in the text)."""
    return isinstance(exc, OSError) and (exc.errno == errno.ENOSPC or NO_SPACE.lower() in str(exc).lower())


def named_write_error(exc: BaseException, path: str | os.PathLike) -> BaseException:
    """The error to raise for a failed write of `path` (the file the user knows, not its temp name).

    Disk full, however it came (see the module's docstring), becomes OSError(ENOSPC, "No space left on
    device", path): "[Errno 28] No space left on device: '<path>'". numpy's errno-less short write is
    taken for disk full when the filesystem has less than 1 MiB left; otherwise it is still named and
    called a short write. Any other OSError without a file name (or naming only the temp file) gets
    `path`; any other error is returned unchanged. The caller chains the original (`raise ... from`)."""
    if not isinstance(exc, OSError) or (exc.filename is not None and not is_temp(Path(str(exc.filename)))):
        return exc
    short = _SHORT_WRITE.match(str(exc))
    if is_disk_full(exc):
        return OSError(errno.ENOSPC, NO_SPACE, str(path))
    if short:
        free = _free_bytes(Path(path).parent)
        if free is not None and free < _NEARLY_FULL_BYTES:
            return OSError(errno.ENOSPC, f"{NO_SPACE} ({short[1]} items requested, {short[2]} written)", str(path))
        size_limit = _file_size_limit()
        if size_limit is not None:
            return OSError(errno.EFBIG, f"{os.strerror(errno.EFBIG)} (this process may write at most {size_limit} "
                                        f"bytes per file: RLIMIT_FSIZE)", str(path))
        return OSError(errno.EIO, f"write cut short ({short[1]} items requested, {short[2]} written; "
                                  f"{free if free is not None else 'unknown'} bytes free: a quota or file size limit?)",
                       str(path))
    if exc.errno is None:
        return OSError(f"{path}: {exc}")
    return OSError(exc.errno, exc.strerror or str(exc), str(path))


@contextlib.contextmanager
def naming(path: str | os.PathLike) -> Iterator[None]:
    """Writes inside this block that fail with an OSError are re-raised naming `path` (named_write_error)."""
    try:
        yield
    except OSError as exc:
        named = named_write_error(exc, path)
        if named is exc:
            raise
        raise named from exc


def _remove(path: Path) -> None:
    try:
        path.unlink(missing_ok=True)
    except OSError:
        pass


def _fill_temp(path: Path, write: Callable[[Path], object], durable: bool) -> tuple[Path, int]:
    """Fill a fresh temp file beside `path` with write(temp); fsync it; (temp, its size). On any
    failure the temp is removed and the error names `path`."""
    tmp = temp_name(path)
    try:
        with naming(path):
            write(tmp)
            with open(tmp, "rb") as f:
                if durable:
                    os.fsync(f.fileno())
                size = os.fstat(f.fileno()).st_size
    except BaseException:
        _remove(tmp)
        raise
    return tmp, size


def atomic_write(path: str | os.PathLike, write: Callable[[Path], object], durable: bool = True) -> int:
    """Call write(temp_path) to fill a temp file, fsync it, rename it to `path`; return its size in bytes.
    durable=False skips the fsyncs (heartbeats: rewritten every second, worthless after a reboot)."""
    path = Path(path)
    tmp, size = _fill_temp(path, write, durable)
    try:
        publish(tmp, path, durable=False)
    except BaseException:
        _remove(tmp)
        raise
    if durable:
        _fsync_dir(path.parent)
    return size


@dataclass
class Staged:
    """A file of a PublishGroup, complete under its temp name."""

    tmp: Path
    path: Path
    size: int


class PublishGroup:
    """Files that appear together or not at all: every one is written in full under a temp name first
    (`stage`, or `adopt` for a temp filled elsewhere), then `publish_all` renames them in order (put
    the manifest last). Renames need no new space, so a full disk stops the group before any file is
    visible. Leaving the `with` block by an exception (or calling `discard`) removes the temps, the
    files already renamed by this group, and the older files at the group's targets: the caller has
    invalidated them (a stage's manifest is removed first), so they are debris on a disk that may be
    full. Not for targets another writer may own at the same time (hold the stage lock)."""

    def __init__(self) -> None:
        self.files: list[Staged] = []
        self.published = False

    def stage(self, path: str | os.PathLike, write: Callable[[Path], object], durable: bool = True) -> Staged:
        path = Path(path)
        tmp, size = _fill_temp(path, write, durable)
        self.files.append(Staged(tmp, path, size))
        return self.files[-1]

    def adopt(self, tmp: str | os.PathLike, path: str | os.PathLike, size: int) -> Staged:
        """A temp file its writer filled (and fsynced) itself, to be published with the others."""
        self.files.append(Staged(Path(tmp), Path(path), size))
        return self.files[-1]

    def publish_all(self, durable: bool = True) -> dict[str, int]:
        """Rename every staged file to its target, in the order staged; {target name: bytes}."""
        for staged in self.files:
            publish(staged.tmp, staged.path, durable=False)
        if durable:
            for folder in {staged.path.parent for staged in self.files}:
                _fsync_dir(folder)
        self.published = True
        return {staged.path.name: staged.size for staged in self.files}

    def discard(self) -> None:
        for staged in self.files:
            _remove(staged.tmp)
            _remove(staged.path)
        self.files.clear()

    def __enter__(self) -> "PublishGroup":
        return self

    def __exit__(self, kind, exc, tb) -> None:
        if kind is not None and not self.published:  # once all are published, the output is whole
            self.discard()


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
