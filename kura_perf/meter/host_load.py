"""How busy the rest of the machine was while a stage ran: the quiet-box protocol (issue 19).

A stage's wall time on a 2-core box doubles when a test suite runs beside it, and nothing in its own
figures says so. So every metered stage carries the CPU seconds that OTHER processes took over its
interval: the box's busy CPU time from /proc/stat (every core) minus this process tree's CPU time, and
that as a share of what the box could give over the interval (wall x cores). Above CONTENDED_SHARE the
record is `contended`, and the published tables leave it out.

Why 0.10 of the box: a quiet Linux VM idles at 0.01-0.03 (the kernel, journald, an ssh session); one
busy neighbour process on a 2-core box is 0.5. At 0.10 (a fifth of a core on 2 cores) the neighbours
can take at most ~10% of the CPU the stage could have had, below the run-to-run spread of the stages
we time; anything above that is a second workload, not background noise.

Busy = user + nice + system + irq + softirq + steal (guest time is already inside user/nice). Steal
counts as contention: on a VM it is CPU the hypervisor gave to another guest, and it slows a stage
exactly as a neighbour process does. idle and iowait are not busy.

The parsing takes the /proc/stat text, so a test feeds it a synthetic sample; only `read_proc_stat`
and `tree_cpu_s` look at the live machine. Linux only: elsewhere the figures are None (unknown, never 0).
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path

CONTENDED_SHARE = 0.10
MIN_OTHER_CPU_S = 0.1  # below this, other processes' CPU is tick noise, whatever its share (is_contended)
PROC_STAT = Path("/proc/stat")
_BUSY_FIELDS = (0, 1, 2, 5, 6, 7)  # user nice system [idle iowait] irq softirq steal


def clock_ticks() -> int:
    """USER_HZ: the unit of /proc/stat (100 on every common Linux)."""
    try:
        return int(os.sysconf("SC_CLK_TCK"))
    except (ValueError, OSError, AttributeError):
        return 100


@dataclass(frozen=True)
class CpuSample:
    """The box's aggregate CPU counters at one moment, in seconds since boot."""

    busy_s: float
    total_s: float
    cores: int


def parse_proc_stat(text: str, ticks: int = 100) -> CpuSample:
    """The aggregate `cpu` line of a /proc/stat text as seconds, and the number of `cpuN` lines (cores).
    A text without a `cpu` line is an error (ValueError): a figure made from nothing would read as quiet."""
    busy = total = None
    cores = 0
    for line in text.splitlines():
        parts = line.split()
        if not parts:
            continue
        if parts[0] == "cpu":
            values = [int(v) for v in parts[1:9]]
            values += [0] * (8 - len(values))
            busy = sum(values[i] for i in _BUSY_FIELDS) / ticks
            total = sum(values) / ticks
        elif parts[0].startswith("cpu") and parts[0][3:].isdigit():
            cores += 1
    if busy is None:
        raise ValueError("/proc/stat text has no aggregate 'cpu' line")
    return CpuSample(busy, total, cores)


def read_proc_stat() -> str | None:
    """The live /proc/stat, or None where there is none (not Linux)."""
    try:
        return PROC_STAT.read_text()
    except OSError:
        return None


def tree_cpu_s() -> float:
    """CPU seconds of this process and its descendants so far: its own user+system time, its reaped
    children's (os.times), and the live descendants' (psutil; a simulator or worker started by the run
    is part of the run, not a neighbour)."""
    t = os.times()
    own = t.user + t.system + t.children_user + t.children_system
    try:
        import psutil  # a dependency of the meter already (host.py)

        for child in psutil.Process().children(recursive=True):
            try:
                c = child.cpu_times()
                own += c.user + c.system
            except psutil.Error:  # gone between listing and reading
                continue
    except Exception:  # noqa: BLE001 - without psutil the own figure is this process's, still honest
        pass
    return own


@dataclass(frozen=True)
class HostLoad:
    """Other processes' CPU over an interval, and that as a share of the box (wall x cores)."""

    other_cpu_s: float
    contention: float
    cores: int

    @property
    def contended(self) -> bool:
        return is_contended(self.contention, other_cpu_s=self.other_cpu_s)


def is_contended(share: float | None, threshold: float = CONTENDED_SHARE, other_cpu_s: float | None = None) -> bool | None:
    """True above the threshold, False at or below it, None when the load is unknown. Never for less than
    MIN_OTHER_CPU_S of other processes' CPU: /proc/stat counts in 10 ms ticks, so over a 17 ms stage two
    ticks of a kernel thread read as 58% of a 2-core box (the offline 100 meta_clusters record of
    2026-12-07), while 0.1 CPU-s taken from a stage can have cost it at most 0.1 s."""
    if share is None:
        return None
    if other_cpu_s is not None and other_cpu_s < MIN_OTHER_CPU_S:
        return False
    return share > threshold


def host_load(before: str, after: str, own_cpu_s: float, wall_s: float, ticks: int = 100,
              cores: int | None = None) -> HostLoad | None:
    """Other processes' CPU between two /proc/stat texts: the box's busy delta minus `own_cpu_s` (this
    process tree's CPU over the same interval), floored at 0 and capped at wall_s x cores (the clocks tick
    at different moments), and its share of wall_s x cores. None when the interval is empty or a text unreadable."""
    try:
        a, b = parse_proc_stat(before, ticks), parse_proc_stat(after, ticks)
    except ValueError:
        return None
    n = cores or b.cores or os.cpu_count() or 1
    if wall_s <= 0:
        return None
    # Floored at 0 and capped at the box's capacity: /proc/stat counts in 10 ms ticks and the wall comes
    # from another clock, so a short busy interval can read a few ticks over 100%.
    other = min(max((b.busy_s - a.busy_s) - max(own_cpu_s, 0.0), 0.0), wall_s * n)
    return HostLoad(other, other / (wall_s * n), n)


class LoadWindow:
    """Start at a stage's start, `finish` at its end: the other processes' load over the stage."""

    def __init__(self) -> None:
        self._stat0 = read_proc_stat()
        self._own0 = tree_cpu_s()
        self._t0 = time.perf_counter()

    def finish(self, wall_s: float | None = None) -> HostLoad | None:
        after = read_proc_stat()
        if self._stat0 is None or after is None:
            return None
        own = tree_cpu_s() - self._own0
        wall = wall_s if wall_s is not None else time.perf_counter() - self._t0
        return host_load(self._stat0, after, own, wall, clock_ticks())


def sample_load(seconds: float = 3.0, sleep=time.sleep) -> HostLoad | None:
    """Other processes' load over a short sample, for waiting until the box is quiet."""
    window = LoadWindow()
    sleep(seconds)
    return window.finish()


def wait_until_quiet(*, threshold: float = CONTENDED_SHARE, timeout_s: float = 600.0, sample_s: float = 3.0,
                     sampler=sample_load, echo=print, clock=time.monotonic) -> HostLoad | None:
    """Sample the other processes' load until it is at or below `threshold`, printing one line per busy
    sample; give up after timeout_s (the caller runs anyway and the record says `contended`). Returns
    the last sample (None where /proc/stat is unreadable: nothing to wait for)."""
    start = clock()
    while True:
        load = sampler(sample_s)
        if load is None or not is_contended(load.contention, threshold):
            return load
        waited = clock() - start
        if waited >= timeout_s:
            echo(f"    box still busy after {waited:,.0f} s (other processes {load.contention:.0%} of "
                 f"{load.cores} cores > {threshold:.0%}); running anyway, the records will say contended")
            return load
        echo(f"    waiting for a quiet box: other processes take {load.contention:.0%} of {load.cores} cores "
             f"(threshold {threshold:.0%}; waited {waited:,.0f} s of {timeout_s:,.0f} s)")
