"""Real operating-system limits for a pipeline subprocess: a memory cap and a small filesystem.

Memory: a cgroup v2 child with memory.max (the kernel's OOM killer ends the process, as in production)
when the cgroup v2 memory controller is available and writable; else a cgroup v1 memory child with
memory.limit_in_bytes when that hierarchy is writable (the OOM killer too); otherwise RLIMIT_AS set in
the child before it execs (allocations fail with ENOMEM instead). Disk: a tmpfs of the given size mounted over the
data folder when the process may mount (root); otherwise RLIMIT_FSIZE (a write past the size fails with
EFBIG). Every cap is removed on the way out (cgroup removed, tmpfs unmounted), also on failure.
"""

from __future__ import annotations

import contextlib
import os
import resource
import shutil
import signal
import subprocess
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator

CGROUP2_MOUNTS = "/proc/self/mounts"
CGROUP1_MEMORY = Path("/sys/fs/cgroup/memory")


@dataclass
class Cap:
    """What a scenario applies to its pipeline processes and how it did it."""

    method: str  # e.g. "cgroup v2 memory.max", "RLIMIT_AS", "tmpfs", "RLIMIT_FSIZE", "none"
    preexec: Callable[[], None] | None = None  # runs in the child between fork and exec
    describe: str = ""
    events: Callable[[], dict] = field(default=lambda: {})  # what the cap saw (e.g. oom_kill count)
    lift: Callable[[], None] = field(default=lambda: None)  # end the fault, as a user freeing disk space would


# -- memory -------------------------------------------------------------------------------------------------
def _cgroup2_root() -> Path | None:
    try:
        for line in Path(CGROUP2_MOUNTS).read_text().splitlines():
            parts = line.split()
            if len(parts) >= 3 and parts[2] == "cgroup2":
                return Path(parts[1])
    except OSError:
        return None
    return None


def _own_cgroup2() -> str | None:
    try:
        for line in Path("/proc/self/cgroup").read_text().splitlines():
            if line.startswith("0::"):
                return line[3:].strip() or "/"
    except OSError:
        return None
    return None


def cgroup2_memory_parent(root: Path | None = None, own: str | None = None) -> Path | None:
    """The cgroup v2 folder under which a child with memory.max can be made, or None when there is none:
    no cgroup2 mount, no memory controller delegated to children there, or not writable."""
    root = root if root is not None else _cgroup2_root()
    own = own if own is not None else _own_cgroup2()
    if root is None or own is None:
        return None
    parent = root / own.lstrip("/")
    try:
        controllers = (parent / "cgroup.subtree_control").read_text().split()
    except OSError:
        return None
    if "memory" not in controllers or not os.access(parent, os.W_OK):
        return None
    return parent


@contextlib.contextmanager
def memory_cap(limit_mb: int, parent: Path | None = None, v1_parent: Path | bool | None = None) -> Iterator[Cap]:
    """A real memory cap of limit_mb for the processes started with the yielded Cap's preexec.
    v1_parent=False skips cgroup v1 (RLIMIT_AS is then the fallback)."""
    parent = parent if parent is not None else cgroup2_memory_parent()
    limit = int(limit_mb) * 2**20
    if parent is None and v1_parent is not False and _cgroup1_writable(v1_parent or CGROUP1_MEMORY):
        with _cgroup1_cap(v1_parent or CGROUP1_MEMORY, limit, limit_mb) as cap:
            yield cap
        return
    if parent is None:
        def set_rlimit_as() -> None:
            resource.setrlimit(resource.RLIMIT_AS, (limit, limit))

        yield Cap("RLIMIT_AS", set_rlimit_as, f"RLIMIT_AS {limit_mb} MB (no writable cgroup v2 memory controller)")
        return
    group = parent / f"kura-perf-stress-{uuid.uuid4().hex[:8]}"
    group.mkdir()
    try:
        (group / "memory.max").write_text(str(limit))
        with contextlib.suppress(OSError):
            (group / "memory.swap.max").write_text("0")  # no swap: the cap is the cap
        join_group = _joiner(group / "cgroup.procs")

        def events() -> dict:
            try:
                pairs = (line.split() for line in (group / "memory.events").read_text().splitlines())
                return {k: int(v) for k, v in pairs}
            except (OSError, ValueError):
                return {}

        yield Cap("cgroup v2 memory.max", join_group, f"cgroup v2 {group} memory.max {limit_mb} MB", events)
    finally:
        _remove_cgroup(group)


def _joiner(procs: Path):
    """The pre-exec step that moves the child into the cgroup (v1 and v2 both take a pid in cgroup.procs)."""
    def join_group() -> None:
        with open(procs, "w") as f:
            f.write(str(os.getpid()))

    return join_group


def cgroup_memory_available() -> bool:
    """Whether memory_cap() can use a cgroup (a cap on resident memory) rather than RLIMIT_AS (a cap on
    address space, which a Python process with numpy and torch loaded uses several times over)."""
    return cgroup2_memory_parent() is not None or _cgroup1_writable(CGROUP1_MEMORY)


def _cgroup1_writable(root: Path) -> bool:
    return (root / "memory.limit_in_bytes").is_file() and os.access(root, os.W_OK)


@contextlib.contextmanager
def _cgroup1_cap(root: Path, limit: int, limit_mb: int) -> Iterator[Cap]:
    group = root / f"kura-perf-stress-{uuid.uuid4().hex[:8]}"
    try:
        group.mkdir()
    except OSError:  # not allowed after all: the caller's fallback is RLIMIT_AS
        def set_rlimit_as() -> None:
            resource.setrlimit(resource.RLIMIT_AS, (limit, limit))

        yield Cap("RLIMIT_AS", set_rlimit_as, f"RLIMIT_AS {limit_mb} MB (cannot create a memory cgroup)")
        return
    try:
        (group / "memory.limit_in_bytes").write_text(str(limit))
        with contextlib.suppress(OSError):
            (group / "memory.memsw.limit_in_bytes").write_text(str(limit))  # no swap beyond the cap
        join_group = _joiner(group / "cgroup.procs")

        def events() -> dict:
            try:
                pairs = (line.split() for line in (group / "memory.oom_control").read_text().splitlines())
                counts = {k: int(v) for k, v in pairs}
                failcnt = int((group / "memory.failcnt").read_text())
                return {"oom_kill": counts.get("oom_kill", 0), "max": failcnt}
            except (OSError, ValueError):
                return {}

        yield Cap("cgroup v1 memory.limit_in_bytes", join_group,
                  f"cgroup v1 {group} memory.limit_in_bytes {limit_mb} MB", events)
    finally:
        _remove_cgroup(group)


def _remove_cgroup(group: Path) -> None:
    """A cgroup can only be removed once empty: kill what is left in it, then rmdir."""
    with contextlib.suppress(OSError):
        for pid in (group / "cgroup.procs").read_text().split():
            with contextlib.suppress(ProcessLookupError, ValueError):
                os.kill(int(pid), signal.SIGKILL)
    for _ in range(50):
        try:
            group.rmdir()
            return
        except FileNotFoundError:
            return
        except OSError:
            import time

            time.sleep(0.1)


# -- disk ---------------------------------------------------------------------------------------------------
def _mount_tmpfs(target: Path, size_kb: int) -> bool:
    if os.geteuid() != 0 or shutil.which("mount") is None:
        return False
    result = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={int(size_kb)}k,mode=0755", "kura-perf-stress",
                             str(target)], capture_output=True, text=True)
    return result.returncode == 0


def _unmount(target: Path) -> None:
    result = subprocess.run(["umount", str(target)], capture_output=True, text=True)
    if result.returncode != 0:  # a process still holds a file there: detach now, freed when it lets go
        subprocess.run(["umount", "-l", str(target)], capture_output=True, text=True)


@contextlib.contextmanager
def small_filesystem(target: Path, size_kb: int) -> Iterator[Cap]:
    """`target` (created empty) becomes a filesystem of size_kb: a tmpfs when mounting is allowed,
    else a per-file size limit (RLIMIT_FSIZE) for the processes started with the Cap's preexec."""
    target.mkdir(parents=True, exist_ok=True)
    if _mount_tmpfs(target, size_kb):
        def grow() -> None:
            subprocess.run(["mount", "-o", f"remount,size={int(size_kb) * 16 + 4096}k", str(target)],
                           capture_output=True, text=True)

        try:
            yield Cap("tmpfs", None, f"tmpfs of {size_kb} KB mounted on {target}", lift=grow)
        finally:
            _unmount(target)
        return
    limit = int(size_kb) * 1024

    def set_rlimit_fsize() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails (EFBIG) instead of killing
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    yield Cap("RLIMIT_FSIZE", set_rlimit_fsize, f"RLIMIT_FSIZE {size_kb} KB per file (mounting a tmpfs is not allowed)")


def is_mounted(target: Path) -> bool:
    try:
        return any(line.split()[1] == str(target) for line in Path("/proc/self/mounts").read_text().splitlines())
    except OSError:
        return False
