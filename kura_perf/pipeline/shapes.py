"""Pipeline shapes (proposal §2.2): which stages a run materializes and how.

- minimal:   conversations -> summaries -> clusters (embedding is part of clustering, as in Kura's
             own clustering step); no meta-clusters, no projection.
- full:      every stage (`benchmark_job`, the full shape's job, which the nightly schedule runs).
- custom:    every stage, with a user step ("module:function", StageData -> StageData) inserted after
             one stage; each stage's output is kept as a checkpoint, so running the job again after a
             failure resumes from the last completed stage instead of redoing the finished ones.
- streaming: every stage with the profile key `stream_batch_size` set (conversations, summaries and
             embeddings then run batch after batch, kura_perf/pipeline/streaming.py).

No Dagster here: the shape jobs (kura_perf/defs/jobs.py) give each stage asset its shape as typed run
config (kura_perf/defs/config.py), which becomes a `ShapeSettings`, and `run_shape_stage` does one
stage the way the shape asks. Records carry the shape (column `shape`)
and the effective profile's hash, so the regression history of a shape that changes the work (custom,
streaming) is never mixed with plain runs.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from kura_perf.errors import ProfileError, did_you_mean
from kura_perf.files.outputs import StageData
from kura_perf.pipeline import checkpoints
from kura_perf.pipeline.custom_steps import DEFAULT_AFTER, DEFAULT_STEP, apply_step, load_step
from kura_perf.pipeline.runner import StageRun, run_stage
from kura_perf.profiles import Profile
from kura_perf.settings.paths import Paths
from kura_perf.settings.run import RunSettings
from kura_perf.stages.base import STAGES, UPSTREAM, StageInputs, StageResult
from kura_perf.store import liveness
from kura_perf.store.record import StageRecord

SHAPE_TAG = "kura_perf/shape"  # a shape job's label (the job's tag; the options are the assets' run config)
STREAM_KEY = "stream_batch_size"
DEFAULT_STREAM_BATCH_SIZE = 256
CUSTOM_STAGE = "custom_step"  # the stage name of the custom step's records


@dataclass(frozen=True)
class Shape:
    name: str
    stages: tuple[str, ...]
    description: str
    resumable: bool = False


SHAPES: dict[str, Shape] = {
    "minimal": Shape("minimal", ("conversations", "summaries", "embeddings", "clusters"),
                     "Conversations -> summaries -> clusters (embedding included): no meta-clusters, no projection."),
    "full": Shape("full", STAGES, "Every stage: conversations -> summaries -> embeddings -> clusters -> "
                                  "meta-clusters -> projection."),
    "custom": Shape("custom", STAGES, "Every stage with a user step (custom_step, 'module:function') inserted after "
                                      "one stage; resumes from the last completed stage's checkpoint.",
                    resumable=True),
    "streaming": Shape("streaming", STAGES, f"Every stage with {STREAM_KEY} set: conversations, summaries and "
                                            "embeddings in batches instead of all at once."),
}


def streaming_supported() -> bool:
    return STREAM_KEY in Profile.model_fields


@dataclass(frozen=True)
class ShapeSettings:
    """The shape of a run and its options (the stage assets' run config, from the UI launchpad or the CLI).
    custom_step: "module:function", overrides the profile's custom_step.callable; custom_after: a stage
    name, overrides custom_step.after; stream_batch_size: overrides the profile's."""

    shape: str | None = None  # None: stages materialized ad hoc (UI selection, `kura-perf run` without --shape)
    custom_step: str | None = None
    custom_after: str | None = None
    stream_batch_size: int | None = None

    def __post_init__(self):
        if self.shape is not None and self.shape not in SHAPES:
            raise ProfileError(f"shape: unknown shape '{self.shape}'; expected one of {', '.join(SHAPES)}")
        if self.custom_after is not None and self.custom_after not in STAGES[:-1]:
            raise ProfileError(f"custom_after: '{self.custom_after}' is not a stage a step can follow"
                               f"{did_you_mean(self.custom_after, STAGES[:-1])}; expected "
                               f"one of {', '.join(STAGES[:-1])}")
        if self.stream_batch_size is not None and self.stream_batch_size < 1:
            raise ProfileError(f"stream_batch_size: must be a positive number of conversations "
                               f"(got {self.stream_batch_size})")

    @property
    def definition(self) -> Shape | None:
        return SHAPES.get(self.shape) if self.shape else None

    def effective_profile(self, profile: Profile) -> Profile:
        """The profile a stage of this shape runs under: the custom step or the batch size filled in."""
        if self.shape == "custom":
            current = profile.custom_step
            step = {"callable": self.custom_step or (current.callable if current else DEFAULT_STEP),
                    "after": self.custom_after or (current.after if current else DEFAULT_AFTER)}
            return _with(profile, "custom_step", step, "custom_step")
        if self.shape == "streaming":
            if not streaming_supported():
                raise ProfileError(
                    f"the streaming shape needs the profile key '{STREAM_KEY}' (batched conversations, summaries "
                    "and embeddings, from the matrix-streaming work), which this build's profile schema does not "
                    "have yet")
            size = self.stream_batch_size or getattr(profile, STREAM_KEY, None) or DEFAULT_STREAM_BATCH_SIZE
            return _with(profile, STREAM_KEY, size, "stream_batch_size")
        return profile

    def folder(self, paths: Paths, profile: str, scale: str) -> Path:
        """Full runs (and ad-hoc ones) use the partition's folder; other shapes keep their own outputs,
        so a custom step's rewritten data never leaks into a plain run."""
        if self.shape in (None, "full"):
            return paths.partition_dir(profile, scale)
        return paths.storage / "_shapes" / self.shape / profile / scale


def _with(profile: Profile, key: str, value, setting: str) -> Profile:
    from pydantic import ValidationError

    try:
        return type(profile).model_validate({**profile.model_dump(), key: value})
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(str(p) for p in err["loc"])
        raise ProfileError(f"profile '{profile.name}' with {setting}: key '{where}': {err['msg']} "
                           f"(got {err.get('input')!r})") from None


class CustomStepBackend:
    """Runs a user step through the same meter and record as a stage (stage name `custom_step`)."""

    name = "custom"

    def __init__(self, spec: str, after: str):
        self.spec, self.after = spec, after

    def run(self, stage: str, inputs: StageInputs) -> StageResult:
        step = load_step(self.spec)  # here, inside the measured block: an import error is recorded
        data = inputs.upstream[self.after]
        out = apply_step(step, self.spec, data)
        extra = {"callable": self.spec, "after": self.after}
        for table in out.tables.values():
            extra.update({k: v for k, v in table.attrs.items() if isinstance(v, (int, float, str))})
        return StageResult(out, items_in=_items(data), items_out=_items(out), extra=extra)

    def close(self) -> None:
        pass


def _items(data: StageData) -> int:
    if "main" in data.tables:
        return len(data.tables["main"])
    if "main" in data.arrays:
        return len(data.arrays["main"])
    return 0


@dataclass
class ShapeStageOutcome:
    records: list[StageRecord] = field(default_factory=list)  # the stage's record and the custom step's, if run
    resumed: list[str] = field(default_factory=list)  # what a checkpoint made unnecessary
    folder: Path | None = None

    def record_of(self, stage: str) -> StageRecord | None:
        return next((r for r in self.records if r.stage == stage), None)


def run_shape_stage(stage: str, settings: ShapeSettings, base_profile: Profile, scale: str, run_id: str,
                    run_settings: RunSettings) -> ShapeStageOutcome:
    """Run one stage as the shape asks: plainly, or (custom) from its checkpoint and followed by the step."""

    profile = settings.effective_profile(base_profile)
    folder = settings.folder(run_settings.paths, base_profile.name, scale)
    shape = settings.definition
    resumable = bool(shape and shape.resumable)
    step = profile.custom_step if settings.shape == "custom" else None
    step_here = step is not None and step.after == stage
    spec = step.callable if step_here else None
    digest = profile.content_hash()
    outcome = ShapeStageOutcome(folder=folder)

    def stage_run(name: str, **kw) -> StageRun:
        return StageRun(name, profile, scale, run_id=run_id, settings=run_settings, shape=settings.shape,
                        folder_override=folder, checkpoint=resumable, **kw)

    def run_step() -> None:
        outcome.records.append(run_stage(stage_run(CUSTOM_STAGE, backend=CustomStepBackend(spec, stage),
                                                   reads=(stage,), writes=stage, custom_step=spec)))

    def resumed(name: str) -> None:
        outcome.resumed.append(name)
        # Not run, so no record: the run's marker must not take it for the stage a kill interrupted.
        liveness.note_recorded(run_settings.paths.running, run_id, name)

    reads = UPSTREAM[stage]
    if resumable and checkpoints.reusable(folder, stage, reads, digest, custom_step=spec):
        resumed(stage)
        if step_here:
            resumed(CUSTOM_STAGE)
        return outcome
    if resumable and step_here and checkpoints.reusable(folder, stage, reads, digest, custom_step=None):
        resumed(stage)  # the stage finished before; only its step failed or never ran
        run_step()
        return outcome
    outcome.records.append(run_stage(stage_run(stage)))
    if step_here:
        run_step()
    return outcome
