"""Run one stage of one partition, measured, and produce its stage record. No Dagster here: the
Dagster assets, the CLI and the tests all come through this function."""

from __future__ import annotations

import json
import logging
import os
import sys
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from kura_perf.files import outputs

from kura_perf.pipeline import streaming
from kura_perf.backends import Backend, Prepares, ReportsApiCounters, get_backend
from kura_perf.settings.paths import Paths
from kura_perf.errors import BreakingPoint
from kura_perf.meter import Meter
from kura_perf.meter.api import latency_percentiles
from kura_perf.meter.meter import StageInterrupted
from kura_perf.meter.failures import is_interrupt, is_memory_exhaustion, memory_reason
from kura_perf.meter.projection import Progress, project
from kura_perf.meter import memory
from kura_perf.meter.host import code_version, host_info, package_versions, worker_identity
from kura_perf.profiles import Profile
from kura_perf.scales import scale_count
from kura_perf.settings.run import RunSettings
from kura_perf.models.jit_cache import JitWatch
from kura_perf.models.jit_cache import configure as configure_numba_cache
from kura_perf.store.quality_levels import LEVEL_STAGES, timed_levels
from kura_perf.stages.base import UPSTREAM, StageInputs, StageResult
from kura_perf.store import liveness
from kura_perf.store.pending import save_pending
from kura_perf.store.record import StageRecord

log = logging.getLogger("kura_perf")



@dataclass
class StageRun:
    """One partition's stage run: the inputs a runner needs and the context a record carries."""

    stage: str
    profile: Profile
    scale: str
    run_id: str = field(default_factory=lambda: uuid.uuid4().hex)
    paths: Paths | None = None  # shorthand for settings=RunSettings.from_env(paths=paths); then settings.paths
    backend: Backend | None = None  # reuse across stages of a run (model loads, API clients)
    shape: str | None = None  # the pipeline shape of the run (kura_perf/pipeline/shapes.py), recorded as is
    folder_override: Path | None = None  # a shape's own output folder instead of the partition's
    checkpoint: bool = False  # keep what produced the output in its manifest (resumable shapes)
    reads: tuple[str, ...] | None = None  # upstream outputs to read (default: the stage's UPSTREAM)
    writes: str | None = None  # output name to write (default: the stage's own)
    custom_step: str | None = None  # set when this run is a custom step rewriting `writes`
    settings: RunSettings | None = None  # how the run is set up; None: from the environment (with `paths`)

    def __post_init__(self) -> None:
        if self.settings is None:
            self.settings = RunSettings.from_env(paths=self.paths)
        elif self.paths is not None and self.paths != self.settings.paths:
            raise ValueError(f"StageRun: paths {self.paths} differ from settings.paths {self.settings.paths}; give one")
        self.paths = self.settings.paths

    @property
    def folder(self) -> Path:
        return self.folder_override or self.paths.partition_dir(self.profile.name, self.scale)


class ProgressLog:
    """Progress lines for long stages, at most one every `every_s` seconds. It also keeps the latest
    progress (done/total and when) for the heartbeat and for the record of a stage that did not finish."""

    def __init__(self, stage: str, every_s: float = 5.0, logger: logging.Logger = log):
        self.stage, self.every_s, self.logger = stage, every_s, logger
        self._t0 = time.perf_counter()
        self._last = 0.0
        self.latest: Progress | None = None  # replaced whole (never mutated): safe to read from another thread

    def __call__(self, done: int, total: int) -> None:
        now = time.perf_counter()
        elapsed = now - self._t0
        first = self.latest
        self.latest = Progress(int(done), int(total), first.first_done if first else int(done),
                               first.first_s if first else elapsed, elapsed)
        if done < total and now - self._last < self.every_s:
            return
        self._last = now
        rate = done / elapsed if elapsed > 0 else 0.0
        eta = (total - done) / rate if rate > 0 else float("nan")
        self.logger.info("%s: %d/%d (%.0f%%), %.0f items/s, eta %.0f s", self.stage, done, total,
                         100 * done / max(total, 1), rate, eta)


def _memory_limit(profile: Profile) -> float:
    """The profile's limit, else 90% of RAM: a stage is stopped and recorded before the machine swaps or OOMs."""
    return profile.memory_limit_mb or 0.9 * memory.total_ram_mb()


def record_fields(run: StageRun, backend_name: str) -> dict:
    """The columns that identify a stage record and make it comparable: known before the stage starts,
    so the running marker carries them into a died record too."""
    versions = package_versions()
    return {
        "run_id": run.run_id,
        "stage": run.stage,
        "shape": run.shape,
        "backend": backend_name,
        "profile": run.profile.name,
        "profile_hash": run.profile.content_hash(),
        "scale": run.scale,
        "scale_n": scale_count(run.scale),
        "embedding_backend": run.profile.embedding_backend,  # also on died records
        "code_version": code_version(),
        "package_versions": json.dumps(versions, sort_keys=True),
        "kura_version": versions.get("kura"),
        "worker": worker_identity(),
        **host_info(),
    }


def record_status(error: BaseException | None) -> str:
    if error is None:
        return "success"
    if isinstance(error, BreakingPoint):
        return "breaking_point"
    return "interrupted" if is_interrupt(error) else "failed"


def build_record(run: StageRun, meter: Meter, result: StageResult | None, bytes_written: int,
                 error: BaseException | None, backend_name: str, api_on_failure=None, progress=None) -> StageRecord:
    """progress: the stage's ProgressLog (how far it got; a projection when it did not finish)."""
    m = meter.measurement
    status = record_status(error)
    q = (result.quality if result else {}) or {}
    counters = result.api if result else api_on_failure
    api = counters.as_dict() if counters else {}
    items_out = result.items_out if result else None
    elapsed = m.wall_s or (time.time() - m.started_at if m.started_at else 0.0)
    projection = project(run.stage, getattr(progress, "latest", None), elapsed, finished=error is None)
    return StageRecord(
        **record_fields(run, backend_name),
        record_id=uuid.uuid4().hex,
        status=status,
        error_type=type(error).__name__ if error else None,
        error_message=str(error)[:2000] if error else None,
        started_at=datetime.fromtimestamp(m.started_at, timezone.utc),
        finished_at=datetime.fromtimestamp(m.finished_at or time.time(), timezone.utc),
        wall_s=m.wall_s,
        cpu_user_s=m.cpu_user_s,
        cpu_sys_s=m.cpu_sys_s,
        rss_start_mb=m.rss_start_mb,
        peak_rss_mb=None if np.isnan(m.peak_rss_mb) else m.peak_rss_mb,
        peak_method=m.peak_method if m.metered else "off",
        mem_timeline_s=m.timeline_s,
        mem_timeline_mb=m.timeline_mb,
        items_in=result.items_in if result else None,
        items_out=items_out,
        items_per_s=(result.items_in / m.wall_s) if result and m.wall_s > 0 else None,
        bytes_written=bytes_written,
        skipped_records=result.skipped if result else None,
        api_calls=api.get("calls"),
        api_errors=api.get("errors"),
        api_429s=api.get("rate_limited"),
        api_retries=api.get("retries"),
        api_timeouts=api.get("timeouts"),
        tokens_in=api.get("tokens_in"),
        tokens_out=api.get("tokens_out"),
        cost_usd=api.get("cost_usd"),
        warnings="; ".join(api.get("warnings") or []) or None,
        **latency_percentiles(api.get("latencies_s", [])),
        silhouette=q.get("silhouette"),
        davies_bouldin=q.get("davies_bouldin"),
        n_clusters=q.get("n_clusters"),
        noise_share=q.get("noise_share"),
        ari=q.get("ari"),
        nmi=q.get("nmi"),
        v_measure=q.get("v_measure"),
        metered=m.metered,
        jit_compiled=getattr(result, "jit_compiled", None) if result else None,
        meter_cpu_s=m.meter_cpu_s,
        model_items_per_s=result.model_items_per_s if result else None,
        model_sample_n=result.model_sample_n if result else None,
        extra=json.dumps(result.extra if result else {}, default=str),
        quality_levels=list(result.quality_levels) if result else [],  # -> quality_levels table (pending.py)
        **projection.as_record(),
    )


def _hard_stop(run: StageRun, meter: Meter, backend: Backend, progress=None, heartbeat=None) -> None:
    """Last resort when a guard fired and the stage is stuck in native code: record the breaking
    point straight into the store (no hook will run), say so, and end the process."""
    from kura_perf.store.pending import write_stage_record

    m = meter.measurement
    error = BreakingPoint(run.stage, m.guard_reason, m.peak_rss_mb)
    record = build_record(run, meter, None, 0, error, getattr(backend, "name", "?"), progress=progress)
    write_stage_record(run.paths.metrics, record)
    if heartbeat is not None:
        liveness.clear(run.paths.running, run.run_id, run.stage)
    sys.stderr.write(f"kura-perf: {error}; recorded as a breaking point, terminating the process\n")
    sys.stderr.flush()
    os._exit(75)


def _prepare(backend: Backend, run: StageRun) -> Exception | None:
    """The backend's one-time set-up and model-only calibration, outside the stage's measured time."""
    if not isinstance(backend, Prepares):
        return None
    try:
        backend.prepare(run.stage, lambda name: outputs.read_stage(run.folder, name))
    except Exception as exc:  # noqa: BLE001 - recorded as the stage's failure
        return exc
    return None
def _score_levels(run: StageRun, result: StageResult) -> None:
    """Per-level quality from the stored outputs, outside the metered block (evaluation, not pipeline
    cost; its time is in extra.quality_levels_s). A scoring bug is logged and noted, never fatal."""
    try:
        result.quality_levels, seconds = timed_levels(run.folder, run.stage, run.profile.seed,
                                                      run.profile.truth_levels)
        result.extra["quality_levels_s"] = round(seconds, 3)
    except Exception as exc:  # noqa: BLE001 - the stage itself succeeded
        log.warning("%s: per-level quality failed: %s", run.stage, exc)
        result.extra["quality_levels_error"] = f"{type(exc).__name__}: {exc}"[:500]


def _start_heartbeat(run: StageRun, backend_name: str, progress: ProgressLog) -> liveness.Heartbeat | None:
    """The stage's running marker. A stage still runs when it cannot be written (say, a full disk):
    its own record is what matters, the marker only covers a death."""
    try:
        return liveness.Heartbeat(run.paths.running, record_fields(run, backend_name), progress)
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


def _save_record(run: StageRun, record: StageRecord) -> None:
    """Hand the record to the hook; if even that small file cannot be written (disk full), put it
    straight into the store so the failure is still recorded."""
    try:
        save_pending(run.paths.pending, record)
    except OSError as exc:
        from kura_perf.store.pending import write_stage_record

        log.warning("could not save the pending record of %s (%s); writing it to the store directly", run.stage, exc)
        write_stage_record(run.paths.metrics, record)


def _classify(run: StageRun, meter: Meter, error: BaseException) -> BaseException:
    """Memory exhaustion in any guise becomes a breaking point; other errors stay what they are."""
    if isinstance(error, (BreakingPoint, StageInterrupted)) or not is_memory_exhaustion(error):
        return error
    meter.finish()
    peak = meter.measurement.peak_rss_mb
    # Not chained to the original: the orchestrator's "root cause" must be this breaking point, whose
    # message already names the failed allocation.
    return BreakingPoint(run.stage, memory_reason(error), None if np.isnan(peak) else peak)


def run_stage(run: StageRun) -> StageRecord:
    """Run, measure and store the outputs of one stage; save its record for the hook; return it.

    On failure the record (status failed, breaking_point or interrupted, with the error) is saved too,
    and the error re-raised for the orchestrator to see. While the stage runs, its running marker and
    heartbeat (store/liveness.py) make sure even a SIGKILL leaves a trace.
    """
    profile = run.profile
    owns_backend = run.backend is None
    backend = run.backend or get_backend(profile, run.settings)
    progress = ProgressLog(run.stage)
    heartbeat = _start_heartbeat(run, backend.name, progress)
    meter = Meter(run.stage, enabled=run.settings.meter, memory_limit_mb=_memory_limit(profile),
                  timeout_s=profile.stage_timeout_s, on_sample=_on_sample(heartbeat),
                  on_unresponsive=lambda m: _hard_stop(run, meter, backend, progress, heartbeat))
    result, written, error = None, 0, None
    configure_numba_cache(run.paths.root)
    jit = JitWatch()
    try:
        setup_error = _prepare(backend, run)
        with meter:
            if setup_error is not None:  # raised inside the meter: a normal failed record
                raise setup_error
            reads = run.reads if run.reads is not None else UPSTREAM[run.stage]
            checkpoint = None
            if run.checkpoint:
                from kura_perf.pipeline import checkpoints

                checkpoint = checkpoints.describe(run.folder, reads, run.profile.content_hash(), run.run_id,
                                                  custom_step=run.custom_step,
                                                  carry_inputs_of=run.writes if run.custom_step else None)
            if run.reads is None and streaming.streams(run.stage, profile):  # progress counts the partition's items, batch after batch
                result, sizes = streaming.run_streamed(run.stage, backend, run.folder, scale_count(run.scale),
                                                       profile.stream_batch_size, progress=progress)
            else:
                upstream = {name: outputs.read_stage(run.folder, name) for name in reads}
                inputs = StageInputs(scale_count(run.scale), upstream, progress=progress)
                result = backend.run(run.stage, inputs)
                sizes = None
            if sizes is None:
                sizes = outputs.write_stage(run.folder, run.writes or run.stage, result.data, checkpoint=checkpoint)
            written = sum(sizes.values())
    except StageInterrupted:  # a guard's interrupt that landed outside the metered block
        meter.finish()
        error = BreakingPoint(run.stage, meter.measurement.guard_reason or "interrupted",
                              meter.measurement.peak_rss_mb)
    except Exception as exc:  # noqa: BLE001 - recorded, then re-raised
        error = _classify(run, meter, exc)
    except BaseException as exc:  # Ctrl-C, Dagster's interrupt: recorded as interrupted, then re-raised
        meter.finish()
        error = exc
    finally:
        # A failed stage still reports the calls, errors and 429s it made before giving up.
        # (A Kura failure carries the traffic its call caused, counted from the simulator's log.)
        api_so_far = None if result else (getattr(error, "api", None) or (
            backend.api_counters() if isinstance(backend, ReportsApiCounters) else None))
        if owns_backend:
            backend.close()
    if result is not None:
        compiled = jit.report()
        result.extra["jit"] = compiled.as_dict()
        result.jit_compiled = compiled.jit_compiled
    if error is None and result is not None and run.stage in LEVEL_STAGES:
        _score_levels(run, result)
    record = build_record(run, meter, result, written, error, backend.name, api_so_far, progress)
    _save_record(run, record)
    if heartbeat is not None:
        heartbeat.finished()
    if error is not None:
        if record.status == "interrupted":
            log.error("%s interrupted (%s)", run.stage, type(error).__name__)
        else:
            log.error("%s failed (%s): %s", run.stage, record.status, error)
        raise error
    log.info("%s: %d items in %.2f s, peak %.0f MB, %d bytes", run.stage, record.items_in or 0,
             record.wall_s, record.peak_rss_mb or float("nan"), written)
    return record
