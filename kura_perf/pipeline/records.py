"""The stage record of a metered run: its identifying columns (known before the work starts, so a
running marker can carry them into a died record) and the whole record once the meter has stopped.

Success and every ending of a measured run are built here, by `build_record`, with its measured
figures; every record of a stage that did not finish, measured or not (a dead process, a step that
failed before the runner), comes from `store.stage_records.unfinished_record`. No Dagster here."""

from __future__ import annotations

import json
import time
import uuid
from datetime import datetime, timezone
from typing import TYPE_CHECKING

import numpy as np

from kura_perf.errors import BreakingPoint
from kura_perf.kura_envs.envs import current_env_manifest
from kura_perf.meter import Meter
from kura_perf.meter.api import latency_percentiles
from kura_perf.meter.failures import is_interrupt
from kura_perf.meter.host import code_version, host_info, package_versions, worker_identity
from kura_perf.meter.host_load import is_contended
from kura_perf.meter.projection import project
from kura_perf.scales import scale_count
from kura_perf.simulator.process import served_speed_factor
from kura_perf.stages.base import StageResult
from kura_perf.store.record import StageRecord
from kura_perf.store.stage_records import unfinished_record

if TYPE_CHECKING:
    from kura_perf.pipeline.runner import StageRun


def kura_identity(spec: str | None) -> dict:
    """The Kura spec of the run and what it resolved to, from the manifest of the spec environment this
    process runs in (kura_perf/kura_envs/envs.py); both None in kura_perf's own environment."""
    manifest = current_env_manifest()
    if manifest is None:
        return {"kura_spec": spec, "kura_resolved": None}
    return {"kura_spec": spec or manifest.get("spec"), "kura_resolved": manifest.get("resolved")}


def record_fields(run: "StageRun", backend_name: str) -> dict:
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
        "sim_speed_factor": served_speed_factor(run.settings.simulator_url),  # None: no simulator timed it
        "code_version": code_version(),
        "package_versions": json.dumps(versions, sort_keys=True),
        "kura_version": versions.get("kura"),
        **kura_identity(run.settings.kura_spec),
        "worker": worker_identity(),
        **host_info(),
    }


def record_status(error: BaseException | None) -> str:
    """success, breaking_point (a memory or time guard, or memory exhaustion already classified as one),
    interrupted (Ctrl-C, a termination request) or failed."""
    if error is None:
        return "success"
    if isinstance(error, BreakingPoint):
        return "breaking_point"
    return "interrupted" if is_interrupt(error) else "failed"


def work_figures(wall_s: float | None, jit_compile_s: float | None, startup_s: float | None = None) -> dict:
    """jit_compile_s (numba compiling: one-time per machine with a warm cache) and startup_s (the
    process's first import of numba/umap-learn: per process) as their own figures, together never above
    the wall they were measured in, and stage_work_s: the wall without them (never negative), the time
    the report's shares, fits and projections use."""
    if wall_s is None or (isinstance(wall_s, float) and np.isnan(wall_s)):
        return {"jit_compile_s": jit_compile_s, "startup_s": startup_s, "stage_work_s": None}
    compile_s = min(max(jit_compile_s or 0.0, 0.0), wall_s)
    start_s = min(max(startup_s or 0.0, 0.0), wall_s - compile_s)
    return {"jit_compile_s": compile_s if jit_compile_s is not None else None,
            "startup_s": start_s if startup_s is not None else None,
            "stage_work_s": max(wall_s - compile_s - start_s, 0.0)}


def with_api_concurrency(extra: dict, concurrency: dict | None) -> dict:
    """The stage's extra figures plus, for an API stage, what its client kept in flight and the share of
    the binding limit it reached (meter/api.py ConcurrencyStats.summary) under "api_concurrency"."""
    return {**extra, "api_concurrency": concurrency} if concurrency else extra


def build_record(run: "StageRun", meter: Meter, result: StageResult | None, bytes_written: int,
                 error: BaseException | None, backend_name: str, api_on_failure=None, progress=None,
                 fields: dict | None = None) -> StageRecord:
    """progress: the stage's ProgressLog (how far it got; a projection when it did not finish). fields: the
    record_fields already read when the stage began (they do not change during it; reading them asks the
    simulator and git again), else read now."""
    m = meter.measurement
    status = record_status(error)
    q = (result.quality if result else {}) or {}
    counters = result.api if result else api_on_failure
    api = counters.as_dict() if counters else {}
    items_out = result.items_out if result else None
    elapsed = m.wall_s or (time.time() - m.started_at if m.started_at else 0.0)
    projection = project(run.stage, getattr(progress, "latest", None), elapsed, finished=error is None)
    figures = dict(
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
        **work_figures(m.wall_s, getattr(result, "jit_compile_s", None) if result else None,
                       getattr(result, "startup_s", None) if result else None),
        setup_s=getattr(result, "setup_s", None) if result else None,
        meter_cpu_s=m.meter_cpu_s,
        host_other_cpu_s=m.host_other_cpu_s,
        host_contention=m.host_contention,
        contended=is_contended(m.host_contention, other_cpu_s=m.host_other_cpu_s),
        model_items_per_s=result.model_items_per_s if result else None,
        model_sample_n=result.model_sample_n if result else None,
        extra=json.dumps(with_api_concurrency(result.extra if result else {}, api.get("concurrency")), default=str),
        quality_levels=list(result.quality_levels) if result else [],  # -> quality_levels table (store/stage_records.py)
        **projection.as_record(),
    )
    started_at = datetime.fromtimestamp(m.started_at, timezone.utc)
    finished_at = datetime.fromtimestamp(m.finished_at or time.time(), timezone.utc)
    if error is not None:  # the one constructor of records of stages that did not finish
        return unfinished_record(fields or record_fields(run, backend_name), status=status, error_type=type(error).__name__,
                                 error_message=str(error), started_at=started_at, finished_at=finished_at, **figures)
    return StageRecord(**(fields or record_fields(run, backend_name)), record_id=uuid.uuid4().hex, status=status,
                       started_at=started_at, finished_at=finished_at, **figures)
