"""Run one stage of one partition, measured, and produce its stage record. No Dagster here: the
Dagster assets, the CLI and the tests all come through this function; the measuring, guarding and
recording are pipeline/metered.py's, shared with the embedding shards."""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from kura_perf.backends import Backend, Prepares, get_backend
from kura_perf.files import outputs
from kura_perf.meter import units
from kura_perf.models.jit_cache import configure as configure_numba_cache
from kura_perf.pipeline import checkpoints, streaming
from kura_perf.pipeline.metered import metered_run
from kura_perf.profiles import Profile
from kura_perf.scales import scale_count
from kura_perf.settings.paths import Paths
from kura_perf.settings.run import RunSettings
from kura_perf.stages.base import UPSTREAM, StageInputs, StageResult
from kura_perf.store.quality_levels import LEVEL_STAGES, timed_levels
from kura_perf.store.record import StageRecord

log = logging.getLogger("kura_perf")


@dataclass
class StageRun:
    """One partition's stage run: the inputs a runner needs and the context a record carries."""

    stage: str
    profile: Profile
    scale: str
    run_id: str = field(default_factory=lambda: uuid.uuid4().hex)
    backend: Backend | None = None  # reuse across stages of a run (model loads, API clients)
    shape: str | None = None  # the pipeline shape of the run (kura_perf/pipeline/shapes.py), recorded as is
    folder_override: Path | None = None  # a shape's own output folder instead of the partition's
    checkpoint: bool = False  # keep what produced the output in its manifest (resumable shapes)
    reads: tuple[str, ...] | None = None  # upstream outputs to read (default: the stage's UPSTREAM)
    writes: str | None = None  # output name to write (default: the stage's own)
    custom_step: str | None = None  # set when this run is a custom step rewriting `writes`
    # How the run is set up: required, built once by the CLI or the Dagster resource and passed down
    # (the environment is read at the edge, not here).
    settings: RunSettings = field(kw_only=True)

    def __post_init__(self) -> None:
        if not isinstance(self.settings, RunSettings):
            raise TypeError(f"StageRun: settings must be a RunSettings, got {type(self.settings).__name__}")

    @property
    def paths(self) -> Paths:
        return self.settings.paths

    @property
    def folder(self) -> Path:
        return self.folder_override or self.paths.partition_dir(self.profile.name, self.scale)


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


def run_stage(run: StageRun) -> StageRecord:
    """Run, measure and store the outputs of one stage; write its record into the store; return it.

    On failure the record (status failed, breaking_point or interrupted, with the error) is written
    too, and the error re-raised for the orchestrator to see. While the stage runs, its running marker
    and heartbeat (store/liveness.py) make sure even a SIGKILL leaves a trace (pipeline/metered.py).
    """
    profile = run.profile
    owns_backend = run.backend is None
    backend = run.backend or get_backend(profile, run.settings)
    configure_numba_cache(run.paths.root)

    def body(progress) -> tuple[StageResult, int]:
        reads = run.reads if run.reads is not None else UPSTREAM[run.stage]
        checkpoint = None
        if run.checkpoint:
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
        return result, sum(sizes.values())

    def finish(result: StageResult) -> None:
        if run.stage in LEVEL_STAGES:
            _score_levels(run, result)

    record = metered_run(run, body, backend=backend, prepare=lambda: _prepare(backend, run),
                         close_backend=owns_backend, finish=finish)
    peak_mb = units.mib_to_mb(record.peak_rss_mb) if record.peak_rss_mb else float("nan")  # decimal, as shown everywhere
    log.info("%s: %d items in %.2f s, peak %.0f MB, %d bytes", run.stage, record.items_in or 0,
             record.wall_s, peak_mb, record.bytes_written or 0)
    return record
