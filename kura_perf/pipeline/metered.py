"""The one metered run of a piece of stage work: a whole stage (runner.py), one embedding shard or the
shard merge (shards.py) all come through `metered_run`, so they are measured, guarded, classified and
recorded the same way:

  heartbeat   a running marker (store/liveness.py's Heartbeat), refreshed by the meter's sampler, so
              a SIGKILL or the OOM killer still leaves a `died` record;
  meter       time, CPU, peak memory, the memory and time guards, the hard stop for a stage stuck in
              native code;
  classify    memory exhaustion in any guise -> breaking_point; Ctrl-C or a termination request ->
              interrupted; anything else -> failed;
  record      pipeline/records.py build_record;
  write       straight into the store (no hand-off file), then the marker is removed.

A failure is recorded, then re-raised for the orchestrator to see. No Dagster here.
"""

from __future__ import annotations

import logging
import os
import sys
import time
from typing import TYPE_CHECKING, Callable

import numpy as np

from kura_perf.backends import ReportsApiCounters
from kura_perf.errors import BreakingPoint
from kura_perf.meter import Meter, memory
from kura_perf.meter.failures import is_memory_exhaustion, memory_reason
from kura_perf.meter.meter import StageInterrupted
from kura_perf.meter.progress_bar import ProgressBar
from kura_perf.meter.projection import Progress
from kura_perf.models.jit_cache import JitWatch
from kura_perf.pipeline.records import build_record, record_fields
from kura_perf.profiles import Profile
from kura_perf.stages.base import StageResult
from kura_perf.store import liveness
from kura_perf.store.record import StageRecord
from kura_perf.store.stage_records import write_stage_record

if TYPE_CHECKING:
    from kura_perf.pipeline.runner import StageRun

log = logging.getLogger("kura_perf")

# body(progress) -> (result, bytes written): the work measured, inside the meter.
Body = Callable[["ProgressLog"], "tuple[StageResult, int]"]


class ProgressLog:
    """Progress lines for long stages, at most one every `every_s` seconds; or, with `bar` (a person at
    a terminal: RunSettings.progress_bar), one updating line instead (meter/progress_bar.py). It also
    keeps the latest progress (done/total and when) for the heartbeat and for the record of a stage
    that did not finish."""

    def __init__(self, stage: str, every_s: float = 5.0, logger: logging.Logger = log,
                 bar: ProgressBar | None = None):
        self.stage, self.every_s, self.logger, self.bar = stage, every_s, logger, bar
        self._t0 = time.perf_counter()
        self._last = 0.0
        self.latest: Progress | None = None  # replaced whole (never mutated): safe to read from another thread

    def start(self) -> None:
        """The work begins: rates and etas count from here, not from before the backend's set-up (a first
        run's model export took 220 s there and made the first line read "1 items/s, eta 674 s")."""
        self._t0 = time.perf_counter()
        self._last = 0.0

    def __call__(self, done: int, total: int) -> None:
        now = time.perf_counter()
        elapsed = now - self._t0
        first = self.latest
        self.latest = Progress(int(done), int(total), first.first_done if first else int(done),
                               first.first_s if first else elapsed, elapsed)
        if self.bar is not None:
            self.bar.update(int(done), int(total))
            return
        if done < total and now - self._last < self.every_s:
            return
        self._last = now
        rate = done / elapsed if elapsed > 0 else 0.0
        eta = (total - done) / rate if rate > 0 else float("nan")
        self.logger.info("%s: %d/%d (%.0f%%), %.0f items/s, eta %.0f s", self.stage, done, total,
                         100 * done / max(total, 1), rate, eta)

    def close(self) -> None:
        """End the bar's line (its last state stays on screen); nothing to do for log lines."""
        if self.bar is not None:
            self.bar.close()


def progress_for(run: "StageRun", label: str) -> ProgressLog:
    """The stage's progress reporter: a bar on stderr when the run's edge said a person watches a
    terminal (RunSettings.progress_bar), else the plain log lines."""
    bar = ProgressBar(label, sys.stderr) if run.settings.progress_bar else None
    return ProgressLog(label, bar=bar)


def memory_limit(profile: Profile) -> float:
    """The profile's limit, else 90% of RAM: a stage is stopped and recorded before the machine swaps or OOMs."""
    return profile.memory_limit_mb or 0.9 * memory.total_ram_mb()


def store_stage_record(run: "StageRun", record: StageRecord) -> None:
    """A stage's record into stage_runs (and quality_levels), and noted on the run's marker, if any."""
    write_stage_record(run.paths.metrics, record)
    liveness.note_recorded(run.paths.running, run.run_id, record.stage)


def _start_heartbeat(run: "StageRun", fields: dict, progress: ProgressLog, marker, extra: dict | None,
                     interval_s: float | None) -> liveness.Heartbeat | None:
    """The work's running marker. The work still runs when it cannot be written (say, a full disk):
    its own record is what matters, the marker only covers a death."""
    try:
        kwargs = {"interval_s": interval_s} if interval_s else {}
        return liveness.Heartbeat(run.paths.running, fields, progress, path=marker, extra=extra, **kwargs)
    except OSError as exc:
        log.warning("could not write the running marker of %s (%s); a death of this stage would go unrecorded",
                    run.stage, exc)
        return None


def _on_sample(heartbeat: liveness.Heartbeat | None):
    if heartbeat is None:
        return None

    def beat(elapsed_s: float, rss: float, sampled_peak: float) -> None:
        heartbeat.beat(elapsed_s, rss, max(sampled_peak, memory.read_peak_mb() or 0.0))

    return beat


def classify(stage: str, meter: Meter, error: BaseException) -> BaseException:
    """Memory exhaustion in any guise becomes a breaking point; other errors stay what they are."""
    if isinstance(error, (BreakingPoint, StageInterrupted)) or not is_memory_exhaustion(error):
        return error
    meter.finish()
    peak = meter.measurement.peak_rss_mb
    # Not chained to the original: the orchestrator's "root cause" must be this breaking point, whose
    # message already names the failed allocation.
    return BreakingPoint(stage, memory_reason(error), None if np.isnan(peak) else peak)


def _hard_stop(run: "StageRun", meter: Meter, backend_name: str, progress, store, heartbeat) -> None:
    """Last resort when a guard fired and the work is stuck in native code: record the breaking point
    straight into the store, remove the marker (the record covers it), say so, and end the process."""
    m = meter.measurement
    error = BreakingPoint(run.stage, m.guard_reason, m.peak_rss_mb)
    store(build_record(run, meter, None, 0, error, backend_name, progress=progress))
    if heartbeat is not None:
        heartbeat.close()
    sys.stderr.write(f"kura-perf: {error}; recorded as a breaking point, terminating the process\n")
    sys.stderr.flush()
    os._exit(75)


def _api_so_far(error: BaseException | None, backend):
    """A failed stage still reports the calls, errors and 429s it made before giving up. (A Kura
    failure carries the traffic its call caused, counted from the simulator's log.)"""
    return getattr(error, "api", None) or (backend.api_counters() if isinstance(backend, ReportsApiCounters) else None)


def metered_run(run: "StageRun", body: Body, *, backend=None, backend_name: str | None = None,
                label: str | None = None, prepare: Callable[[], BaseException | None] | None = None,
                close_backend: bool = False, timeout: bool = True,
                finish: Callable[[StageResult], None] | None = None,
                adjust: Callable[[StageRecord], StageRecord] | None = None,
                store: Callable[[StageRecord], None] | None = None,
                marker=None, marker_extra: dict | None = None, beat_s: float | None = None) -> StageRecord:
    """Run `body` measured and guarded under a heartbeat, record the outcome, write it, return it.

    backend: the backend doing the work (its name, its API counters for a failure; closed after when
    close_backend); backend_name when there is none (the shard merge). prepare(): set-up outside the
    measured time (a backend's model loads), under the heartbeat, timed as the record's setup_s (a
    per-process cost, never part of wall_s); an error it returns is raised inside the meter, so it
    becomes a normal failed record. numba's compiles and the process's first import of umap-learn
    inside the meter are timed apart (jit_compile_s, startup_s: models/jit_cache.py), so stage_work_s
    is the wall without them. timeout: apply the profile's stage time limit.
    finish(result): after a success, outside the meter (per-level quality). adjust(record): the record
    as stored (the merge's sums over its shards). store(record): where it goes (default: stage_runs,
    store_stage_record). marker / marker_extra / beat_s: the heartbeat's file, extra keys and interval
    (default: the stage's running marker, which `liveness.reap` watches).

    On failure the record (failed, breaking_point or interrupted, with the error) is written too and
    the error re-raised."""
    name = backend_name or getattr(backend, "name", None) or "?"
    store = store or (lambda record: store_stage_record(run, record))
    progress = progress_for(run, label or run.stage)
    fields = record_fields(run, name)  # once per stage: the marker's and the record's
    heartbeat = _start_heartbeat(run, dict(fields), progress, marker, marker_extra, beat_s)
    meter = Meter(run.stage, enabled=run.settings.meter, memory_limit_mb=memory_limit(run.profile),
                  timeout_s=run.profile.stage_timeout_s if timeout else None, on_sample=_on_sample(heartbeat),
                  on_unresponsive=lambda m: _hard_stop(run, meter, name, progress, store, heartbeat))
    result, written, error, api, jit = None, 0, None, None, None
    try:
        setup_started = time.perf_counter()
        setup_error = prepare() if prepare is not None else None
        setup_s = time.perf_counter() - setup_started if prepare is not None else None
        with meter:
            if setup_error is not None:  # raised inside the meter: a normal failed record
                raise setup_error
            progress.start()  # the meter's wall starts here too
            watch = JitWatch()  # inside the meter: its compile seconds are part of this wall, never more
            try:
                result, written = body(progress)
                jit = watch.report()
            finally:
                progress.close()  # before the outcome's log lines, which would otherwise land on the bar
    except StageInterrupted:  # a guard's interrupt that landed outside the metered block
        meter.finish()
        error = BreakingPoint(run.stage, meter.measurement.guard_reason or "interrupted",
                              meter.measurement.peak_rss_mb)
    except Exception as exc:  # noqa: BLE001 - recorded, then re-raised
        error = classify(run.stage, meter, exc)
    except BaseException as exc:  # Ctrl-C, Dagster's interrupt: recorded as interrupted, then re-raised
        meter.finish()
        error = exc
    finally:
        api = None if result else _api_so_far(error, backend)
        if close_backend and backend is not None:
            backend.close()
    if result is not None:
        if jit is not None:
            result.extra["jit"] = jit.as_dict()
            result.jit_compiled = jit.jit_compiled
            result.jit_compile_s = jit.compile_s
            result.startup_s = jit.startup_s
        result.setup_s = setup_s
        if error is None and finish is not None:
            finish(result)
    record = build_record(run, meter, result, written, error, name, api, progress, fields=fields)
    if adjust is not None:
        record = adjust(record)
    try:
        store(record)
    except Exception as exc:  # noqa: BLE001 - a full disk, an unreachable object store
        # The record stays in the marker (a stage's: the reaper stores it once this process is gone);
        # if even that fails, the marker's figures become a died record.
        kept = heartbeat is not None and marker is None and heartbeat.keep(record.to_json())
        log.error("could not write the record of %s (%s: %s)%s", run.stage, type(exc).__name__, exc,
                  "; kept in its running marker, stored by the next command" if kept else "")
        if error is None:
            raise
        raise error from exc
    if heartbeat is not None:
        heartbeat.close()
    if error is not None:
        if record.status == "interrupted":
            log.error("%s interrupted (%s)", label or run.stage, type(error).__name__)
        else:
            log.error("%s failed (%s): %s", label or run.stage, record.status, error)
        raise error
    return record
