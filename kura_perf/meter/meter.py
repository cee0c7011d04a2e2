"""Measure one block of work: wall, CPU, peak and sampled memory, plus guards that turn runaway
stages into recorded breaking points instead of a hung or swapped-out machine.

tracemalloc is never used: it slows object-heavy code several-fold and would distort the timings.
"""

from __future__ import annotations

import ctypes
import os
import sys
import threading
import time
from dataclasses import dataclass, field

from kura_perf.errors import BreakingPoint
from kura_perf.meter import memory
from kura_perf.meter.host_load import LoadWindow

MAX_TIMELINE_POINTS = 400


class StageInterrupted(BaseException):
    """Raised asynchronously in the measured thread by a guard; turned into BreakingPoint on exit.

    A BaseException so that the stage's own `except Exception` blocks do not swallow it.
    """


@dataclass
class Measurement:
    started_at: float = 0.0  # epoch seconds
    finished_at: float = 0.0
    wall_s: float = 0.0
    cpu_user_s: float = 0.0
    cpu_sys_s: float = 0.0
    rss_start_mb: float = 0.0
    rss_end_mb: float = 0.0
    peak_rss_mb: float = 0.0
    peak_method: str = "sampler"  # "vmhwm" (kernel high-water mark) or "sampler"
    timeline_s: list[float] = field(default_factory=list)
    timeline_mb: list[float] = field(default_factory=list)
    meter_cpu_s: float = 0.0  # CPU the sampler thread itself used: the meter's overhead
    metered: bool = True
    guard_reason: str | None = None
    # The rest of the box over the same interval (meter/host_load.py): other processes' CPU seconds and
    # their share of wall x cores. None where /proc/stat cannot be read (unknown, never "quiet").
    host_other_cpu_s: float | None = None
    host_contention: float | None = None


def _downsample(ts: list[float], mb: list[float], limit: int) -> tuple[list[float], list[float]]:
    """Keep at most `limit` points, taking the max of each bucket so peaks survive."""
    if len(ts) <= limit:
        return ts, mb
    step = len(ts) / limit
    out_t, out_m = [], []
    for i in range(limit):
        lo, hi = int(i * step), max(int((i + 1) * step), int(i * step) + 1)
        j = max(range(lo, min(hi, len(mb))), key=mb.__getitem__)
        out_t.append(ts[j])
        out_m.append(mb[j])
    return out_t, out_m


class Meter:
    """Context manager: `with Meter("embeddings") as m: ...; m.measurement`.

    enabled=False measures only wall and CPU time (no sampler thread, no peak reset): used to
    measure what metering itself costs.
    """

    def __init__(self, stage: str, *, enabled: bool = True, interval_s: float = 0.05,
                 memory_limit_mb: float | None = None, timeout_s: float | None = None,
                 on_unresponsive=None, grace_s: float = 30.0, on_sample=None):
        """on_unresponsive(measurement): called from the sampler thread when a guard fired but the
        stage is stuck in native code that cannot be interrupted for `grace_s`; it must record the
        breaking point and end the process (nothing else can stop a C loop).
        on_sample(elapsed_s, rss_mb, peak_mb): called from the sampler thread after every sample (the
        runner's heartbeat, which throttles itself); its errors are ignored."""
        self.stage = stage
        self.enabled = enabled
        self.interval_s = interval_s
        self.memory_limit_mb = memory_limit_mb
        self.timeout_s = timeout_s
        self.measurement = Measurement(metered=enabled)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._target_thread_id: int | None = None
        self._sampled_peak = 0.0
        self._t0 = 0.0
        self.on_unresponsive = on_unresponsive
        self.grace_s = grace_s
        self._fired_at: float | None = None
        self._delivered_at = 0.0
        self._previous_hook = None
        self._finished = False
        self.on_sample = on_sample

    # -- guards -----------------------------------------------------------------------------
    def _interrupt(self, reason: str) -> None:
        """Raise StageInterrupted in the measured thread (delivered at its next Python bytecode)."""
        if self.measurement.guard_reason:
            return
        self.measurement.guard_reason = reason
        self._fired_at = time.perf_counter()
        self._deliver()

    # An asynchronous exception that lands inside a garbage-collection callback (a weakref finalizer
    # of SQLAlchemy's, say) is printed as "ignored" and lost; the stage would then run on until the
    # hard stop. So while the stage has not finished, the interrupt is sent again this often.
    REDELIVER_S = 2.0

    def _unraisable(self, unraisable) -> None:
        """Our own interrupt swallowed by a GC callback: not the user's business (it is sent again);
        anything else goes to the previous hook."""
        if unraisable.exc_type is StageInterrupted:
            return
        (self._previous_hook or sys.__unraisablehook__)(unraisable)

    def _deliver(self) -> None:
        self._delivered_at = time.perf_counter()
        ctypes.pythonapi.PyThreadState_SetAsyncExc(
            ctypes.c_ulong(self._target_thread_id), ctypes.py_object(StageInterrupted))

    def _sample_loop(self) -> None:
        cpu0 = time.thread_time()
        m = self.measurement
        while True:
            now = time.perf_counter() - self._t0
            rss = memory.rss_mb()
            m.timeline_s.append(round(now, 3))
            m.timeline_mb.append(round(rss, 1))
            self._sampled_peak = max(self._sampled_peak, rss)
            if self.on_sample is not None:
                try:
                    self.on_sample(now, rss, self._sampled_peak)
                except Exception:  # noqa: BLE001 - a heartbeat must never stop the guards
                    pass
            if self.memory_limit_mb and rss > self.memory_limit_mb:
                self._interrupt(f"memory limit {self.memory_limit_mb:.0f} MB exceeded ({rss:.0f} MB resident)")
            if self.timeout_s and now > self.timeout_s:
                self._interrupt(f"time limit {self.timeout_s:g} s exceeded")
            if (self._fired_at is not None and not self._finished
                    and time.perf_counter() - self._delivered_at > self.REDELIVER_S):
                self._deliver()
            if (self._fired_at is not None and self.on_unresponsive is not None
                    and time.perf_counter() - self._fired_at > self.grace_s):
                m.wall_s, m.finished_at = now, time.time()
                m.peak_rss_mb = max(self._sampled_peak, memory.read_peak_mb() or 0.0)
                m.guard_reason += f"; the stage did not stop within {self.grace_s:.0f} s (stuck in native code)"
                self.on_unresponsive(m)
                return
            if self._stop.wait(self.interval_s):
                break
        m.meter_cpu_s = time.thread_time() - cpu0

    # -- context manager ----------------------------------------------------------------------
    def __enter__(self) -> "Meter":
        m = self.measurement
        self._target_thread_id = threading.get_ident()
        if self.enabled:
            m.peak_method = "vmhwm" if memory.reset_peak() else "sampler"
        m.rss_start_mb = memory.rss_mb()
        self._previous_hook = sys.unraisablehook
        sys.unraisablehook = self._unraisable
        self._times0 = os.times()
        self._load = LoadWindow()
        m.started_at = time.time()
        self._t0 = time.perf_counter()
        if self.enabled or self.memory_limit_mb or self.timeout_s or self.on_sample:
            self._thread = threading.Thread(target=self._sample_loop, name=f"meter-{self.stage}", daemon=True)
            self._thread.start()
        return self

    def finish(self) -> Measurement:
        """Stop sampling and complete the figures. Idempotent: __exit__ calls it, and so does a caller
        whose block was interrupted before __exit__ could run (an interrupt landing in __enter__)."""
        m = self.measurement
        if self._finished:
            return m
        self._finished = True
        m.wall_s = time.perf_counter() - self._t0
        m.finished_at = time.time()
        t1 = os.times()
        m.cpu_user_s = (t1.user - self._times0.user) + (t1.children_user - self._times0.children_user)
        m.cpu_sys_s = (t1.system - self._times0.system) + (t1.children_system - self._times0.children_system)
        load = self._load.finish(m.wall_s)
        if load is not None:
            m.host_other_cpu_s, m.host_contention = load.other_cpu_s, load.contention
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        m.rss_end_mb = memory.rss_mb()
        if self.enabled:
            hwm = memory.read_peak_mb() if m.peak_method == "vmhwm" else None
            m.peak_rss_mb = max(hwm or 0.0, self._sampled_peak, m.rss_end_mb)
            m.timeline_s, m.timeline_mb = _downsample(m.timeline_s, m.timeline_mb, MAX_TIMELINE_POINTS)
        else:
            m.peak_rss_mb, m.timeline_s, m.timeline_mb = float("nan"), [], []
        if m.guard_reason:
            # Cancel an interrupt that has not been delivered yet so it cannot strike later code.
            ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(self._target_thread_id), None)
        if sys.unraisablehook == self._unraisable:
            sys.unraisablehook = self._previous_hook
        return m

    def __exit__(self, exc_type, exc, tb) -> bool:
        m = self.finish()
        if m.guard_reason:  # the limit was crossed, whatever the body did since
            raise BreakingPoint(self.stage, m.guard_reason, m.peak_rss_mb) from None
        return False
