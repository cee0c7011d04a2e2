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

from kura_perf import outputs
from kura_perf.backends import Backend, get_backend
from kura_perf.config import Paths
from kura_perf.errors import BreakingPoint
from kura_perf.meter import Meter
from kura_perf.meter.api import latency_percentiles
from kura_perf.meter.meter import StageInterrupted
from kura_perf.meter import memory
from kura_perf.meter.host import code_version, host_info, package_versions
from kura_perf.profiles import Profile
from kura_perf.scales import scale_count
from kura_perf.stages.base import UPSTREAM, StageInputs, StageResult
from kura_perf.store.pending import save_pending

log = logging.getLogger("kura_perf")

# Test-only knob for the regression checks: "embeddings=0.3" makes that stage sleep 30% longer.
SLOWDOWN_ENV = "KURA_PERF_TEST_SLOWDOWN"
# Turns the meter's sampler and peak reset off, to measure what metering costs.
METER_ENV = "KURA_PERF_METER"


@dataclass
class StageRun:
    """One partition's stage run: the inputs a runner needs and the context a record carries."""

    stage: str
    profile: Profile
    scale: str
    run_id: str = field(default_factory=lambda: uuid.uuid4().hex)
    paths: Paths = field(default_factory=Paths.from_env)
    backend: Backend | None = None  # reuse across stages of a run (model loads, API clients)
    shape: str | None = None  # the pipeline shape of the run (kura_perf/shapes.py), recorded as is
    folder_override: Path | None = None  # a shape's own output folder instead of the partition's
    checkpoint: bool = False  # keep what produced the output in its manifest (resumable shapes)
    reads: tuple[str, ...] | None = None  # upstream outputs to read (default: the stage's UPSTREAM)
    writes: str | None = None  # output name to write (default: the stage's own)
    custom_step: str | None = None  # set when this run is a custom step rewriting `writes`

    @property
    def folder(self) -> Path:
        return self.folder_override or self.paths.partition_dir(self.profile.name, self.scale)


class ProgressLog:
    """Progress lines for long stages, at most one every `every_s` seconds."""

    def __init__(self, stage: str, every_s: float = 5.0, logger: logging.Logger = log):
        self.stage, self.every_s, self.logger = stage, every_s, logger
        self._t0 = time.perf_counter()
        self._last = 0.0

    def __call__(self, done: int, total: int) -> None:
        now = time.perf_counter()
        if done < total and now - self._last < self.every_s:
            return
        self._last = now
        elapsed = now - self._t0
        rate = done / elapsed if elapsed > 0 else 0.0
        eta = (total - done) / rate if rate > 0 else float("nan")
        self.logger.info("%s: %d/%d (%.0f%%), %.0f items/s, eta %.0f s", self.stage, done, total,
                         100 * done / max(total, 1), rate, eta)


def _slowdown(stage: str) -> float:
    for part in os.environ.get(SLOWDOWN_ENV, "").split(","):
        name, _, factor = part.partition("=")
        if name.strip() == stage and factor:
            return float(factor)
    return 0.0


def _memory_limit(profile: Profile) -> float:
    """The profile's limit, else 90% of RAM: a stage is stopped and recorded before the machine swaps or OOMs."""
    return profile.memory_limit_mb or 0.9 * memory.total_ram_mb()


def build_record(run: StageRun, meter: Meter, result: StageResult | None, bytes_written: int,
                 error: BaseException | None, backend_name: str, api_on_failure=None) -> dict:
    m = meter.measurement
    status = "success" if error is None else ("breaking_point" if isinstance(error, BreakingPoint) else "failed")
    q = (result.quality if result else {}) or {}
    counters = result.api if result else api_on_failure
    api = counters.as_dict() if counters else {}
    items_out = result.items_out if result else None
    versions = package_versions()
    record = {
        "record_id": uuid.uuid4().hex,
        "run_id": run.run_id,
        "stage": run.stage,
        "shape": run.shape,
        "backend": backend_name,
        "profile": run.profile.name,
        "profile_hash": run.profile.content_hash(),
        "scale": run.scale,
        "scale_n": scale_count(run.scale),
        "status": status,
        "error_type": type(error).__name__ if error else None,
        "error_message": str(error)[:2000] if error else None,
        "started_at": datetime.fromtimestamp(m.started_at, timezone.utc),
        "finished_at": datetime.fromtimestamp(m.finished_at or time.time(), timezone.utc),
        "wall_s": m.wall_s,
        "cpu_user_s": m.cpu_user_s,
        "cpu_sys_s": m.cpu_sys_s,
        "rss_start_mb": m.rss_start_mb,
        "peak_rss_mb": None if np.isnan(m.peak_rss_mb) else m.peak_rss_mb,
        "peak_method": m.peak_method if m.metered else "off",
        "mem_timeline_s": m.timeline_s,
        "mem_timeline_mb": m.timeline_mb,
        "items_in": result.items_in if result else None,
        "items_out": items_out,
        "items_per_s": (result.items_in / m.wall_s) if result and m.wall_s > 0 else None,
        "bytes_written": bytes_written,
        "skipped_records": result.skipped if result else None,
        "api_calls": api.get("calls"),
        "api_errors": api.get("errors"),
        "api_429s": api.get("rate_limited"),
        "api_retries": api.get("retries"),
        "api_timeouts": api.get("timeouts"),
        "tokens_in": api.get("tokens_in"),
        "tokens_out": api.get("tokens_out"),
        "cost_usd": api.get("cost_usd"),
        **latency_percentiles(api.get("latencies_s", [])),
        "silhouette": q.get("silhouette"),
        "davies_bouldin": q.get("davies_bouldin"),
        "n_clusters": q.get("n_clusters"),
        "noise_share": q.get("noise_share"),
        "ari": q.get("ari"),
        "nmi": q.get("nmi"),
        "v_measure": q.get("v_measure"),
        "metered": m.metered,
        "meter_cpu_s": m.meter_cpu_s,
        "extra": json.dumps(result.extra if result else {}, default=str),
        "code_version": code_version(),
        "package_versions": json.dumps(versions, sort_keys=True),
        "kura_version": versions.get("kura"),
        **host_info(),
    }
    return record


def _hard_stop(run: StageRun, meter: Meter, backend: Backend) -> None:
    """Last resort when a guard fired and the stage is stuck in native code: record the breaking
    point straight into the store (no hook will run), say so, and end the process."""
    from kura_perf.store.writer import write_record

    m = meter.measurement
    error = BreakingPoint(run.stage, m.guard_reason, m.peak_rss_mb)
    record = build_record(run, meter, None, 0, error, getattr(backend, "name", "?"))
    write_record(run.paths.metrics, "stage_runs", record)
    sys.stderr.write(f"kura-perf: {error}; recorded as a breaking point, terminating the process\n")
    sys.stderr.flush()
    os._exit(75)


def run_stage(run: StageRun) -> dict:
    """Run, measure and store the outputs of one stage; save its record for the hook; return it.

    On failure the record (status failed or breaking_point, with the error) is saved too, and the
    error re-raised for the orchestrator to see.
    """
    profile = run.profile
    metered = os.environ.get(METER_ENV, "on") != "off"
    owns_backend = run.backend is None
    backend = run.backend or get_backend(profile)
    meter = Meter(run.stage, enabled=metered, memory_limit_mb=_memory_limit(profile),
                  timeout_s=profile.stage_timeout_s, on_unresponsive=lambda m: _hard_stop(run, meter, backend))
    result, written, error = None, 0, None
    try:
        with meter:
            reads = run.reads if run.reads is not None else UPSTREAM[run.stage]
            checkpoint = None
            if run.checkpoint:
                from kura_perf import checkpoints

                checkpoint = checkpoints.describe(run.folder, reads, run.profile.content_hash(), run.run_id,
                                                  custom_step=run.custom_step,
                                                  carry_inputs_of=run.writes if run.custom_step else None)
            upstream = {name: outputs.read_stage(run.folder, name) for name in reads}
            inputs = StageInputs(scale_count(run.scale), upstream, progress=ProgressLog(run.stage))
            t0 = time.perf_counter()
            result = backend.run(run.stage, inputs)
            if factor := _slowdown(run.stage):
                time.sleep(factor * (time.perf_counter() - t0))
            written = sum(outputs.write_stage(run.folder, run.writes or run.stage, result.data,
                                              checkpoint=checkpoint).values())
    except StageInterrupted:  # a guard's interrupt that landed outside the metered block
        meter.finish()
        error = BreakingPoint(run.stage, meter.measurement.guard_reason or "interrupted",
                              meter.measurement.peak_rss_mb)
    except Exception as exc:  # noqa: BLE001 - recorded, then re-raised
        error = exc
    finally:
        # A failed stage still reports the calls, errors and 429s it made before giving up.
        api_so_far = None if result else getattr(backend, "api_counters", lambda: None)()
        if owns_backend:
            backend.close()
    record = build_record(run, meter, result, written, error, backend.name, api_so_far)
    save_pending(run.paths.pending, record)
    if error is not None:
        log.error("%s failed (%s): %s", run.stage, record["status"], error)
        raise error
    log.info("%s: %d items in %.2f s, peak %.0f MB, %d bytes", run.stage, record["items_in"] or 0,
             record["wall_s"], record["peak_rss_mb"] or float("nan"), written)
    return record
