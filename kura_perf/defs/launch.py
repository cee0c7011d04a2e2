"""Materialize one partition in-process: what `kura-perf run` calls. The same assets, hooks and checks
as the UI runs, so the CLI is not a second code path.

Each stage writes its own record into the store as it ends; the launcher reads the run's records back
once, by run id, for the CLI. The run id is chosen here, before the run starts, so that a run marker
(store/liveness.py RunMarker) covers the whole run: a process killed between two stages leaves a
`died` record for the stage that was next."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field

from kura_perf.defs.instance import default_home, fail_dead_runs, open_instance, run_tags
from kura_perf.errors import KuraPerfError
from kura_perf.meter.failures import INTERRUPT_NAMES, is_interrupt, is_memory_exhaustion
from kura_perf.meter.host import code_version, host_info, worker_identity
from kura_perf.pipeline.shapes import SHAPES, ShapeSettings
from kura_perf.scales import SCALES
from kura_perf.settings.paths import Paths
from kura_perf.settings.run import RunSettings
from kura_perf.stages.base import STAGES
from kura_perf.store import liveness, query


@dataclass
class RunOutcome:
    run_id: str
    success: bool
    failure: str | None
    records: list[dict] | None = field(default_factory=list)  # None: recorded, but not readable back here
    interrupted: bool = False  # Ctrl-C / a termination request: the CLI exits 130


def root_cause(error) -> str:
    """The user's error inside Dagster's wrappers: 'ProfileError: ...', not 'Error occurred while executing op'."""
    while getattr(error, "cause", None) is not None:
        error = error.cause
    message = error.message.strip().splitlines()[-1] if error.message.strip() else ""
    prefix, _, rest = message.partition(": ")
    if rest and prefix.rsplit(".", 1)[-1] == error.cls_name:  # Dagster repeats "module.Class: " in the text
        message = rest
    return f"{error.cls_name}: {message}"


def _run_settings(paths: Paths | None, run_settings: RunSettings | None) -> RunSettings:
    """run_settings, else the environment's with `paths` (the shorthand most callers use)."""
    if run_settings is None:
        return RunSettings.from_env(paths=paths)
    if paths is not None and paths != run_settings.paths:
        raise ValueError(f"paths {paths} differ from run_settings.paths {run_settings.paths}; give one")
    return run_settings


def run_partition(scale: str, profile: str, stages: list[str] | None = None, paths: Paths | None = None,
                  instance=None, dagster_log_level: str = "CRITICAL", extra_assets: list[str] | None = None,
                  asset_config: dict | None = None, run_settings: RunSettings | None = None,
                  run_id: str | None = None) -> RunOutcome:
    """Materialize `stages` (default: all six) plus `extra_assets` (e.g. the sweep) for one partition.
    asset_config: {asset name: its config dict}. run_settings: the run's (default: from the environment,
    with `paths`); the partitions and the resources come from them. instance: default, the one in the
    data root's Dagster home (defs/instance.py). run_id: chosen by the caller (`kura-perf versions` picks
    it before it starts the run in a Kura spec's environment, to read its records after); default, a new one."""
    from dagster import AssetKey, Definitions, define_asset_job

    from kura_perf.defs.build import build_definitions
    from kura_perf.defs.partitions import partition_key

    run_settings = _run_settings(paths, run_settings)
    unknown = set(stages or []) - set(STAGES)
    if unknown:
        raise KuraPerfError(f"unknown stage(s) {sorted(unknown)}; expected some of {', '.join(STAGES)}")
    selection = [AssetKey(s) for s in [*(STAGES if stages is None else stages), *(extra_assets or [])]]

    def prepare():
        """Build the definitions (Dagster's asset graph, the resources): inside the run's marker."""
        defs = build_definitions(run_settings)

        def launch(instance, tags: dict, run_config: dict, run_id: str):
            run_config["ops"] = {name: {"config": cfg} for name, cfg in (asset_config or {}).items()}
            # What dagster.materialize does, with the run id chosen beforehand (materialize takes none).
            job = Definitions(jobs=[define_asset_job(name=ADHOC_JOB, selection=selection)],
                              assets=[*defs.assets, *(defs.asset_checks or [])],
                              resources=defs.resources).resolve_job_def(ADHOC_JOB)
            return job.execute_in_process(partition_key=partition_key(scale, profile), instance=instance,
                                          raise_on_error=False, tags=tags, run_config=run_config, run_id=run_id)

        return launch

    planned = [s for s in STAGES if s in (STAGES if stages is None else stages)]
    return _execute(prepare, run_settings.paths, instance, dagster_log_level, _plan(planned, profile, scale),
                    run_id=run_id)


def run_shape(shape: str, scale: str, profile: str, paths: Paths | None = None, instance=None,
              settings=None, dagster_log_level: str = "CRITICAL", run_settings: RunSettings | None = None) -> RunOutcome:
    """Execute the named job of a pipeline shape (`<shape>_pipeline`; full: `benchmark_job`) on one
    partition, in-process: the job the UI launches, with the shape's options (settings: a ShapeSettings;
    custom step, batch size) as the run's `pipeline_shape` resource config (defs/config.py).
    run_settings and instance as for run_partition."""
    from kura_perf.defs.build import build_definitions
    from kura_perf.defs.config import shape_run_config
    from kura_perf.defs.jobs import shape_job_name, shape_stages
    from kura_perf.defs.partitions import partition_key

    run_settings = _run_settings(paths, run_settings)
    settings = settings or ShapeSettings(shape)
    if shape not in SHAPES:
        raise KuraPerfError(f"unknown shape {shape!r}; expected one of {', '.join(SHAPES)}")

    def prepare():
        """Build the definitions and resolve the shape's job: inside the run's marker."""
        defs = build_definitions(run_settings)
        job = defs.resolve_job_def(shape_job_name(shape))

        def launch(instance, tags: dict, run_config: dict, run_id: str):
            return job.execute_in_process(partition_key=partition_key(scale, profile), instance=instance,
                                          resources=defs.resources, raise_on_error=False,
                                          tags=tags, run_config={**run_config, **shape_run_config(settings)},
                                          run_id=run_id)

        return launch

    return _execute(prepare, run_settings.paths, instance, dagster_log_level,
                    _plan(shape_stages(shape), profile, scale, shape))


ADHOC_JOB = "__kura_perf_adhoc_job__"


def _plan(stages: list[str], profile: str, scale: str, shape: str | None = None) -> dict:
    """What the run marker carries: the stages planned, in pipeline order, and the columns a died
    record of a stage that never started can have."""

    return {"stages": stages, "fields": {"profile": profile, "scale": scale, "scale_n": SCALES.get(scale),
                                         "shape": shape, "code_version": code_version(),
                                         "worker": worker_identity(), **host_info()}}


def _execute(prepare, paths: Paths, instance, dagster_log_level: str, plan: dict,
             run_id: str | None = None) -> RunOutcome:
    """Under the run's marker: `prepare()` builds the definitions and returns `launch(instance, tags,
    run_config, run_id)` (a materialize or a job execution), which runs; its result, a failure or a
    Ctrl-C becomes a RunOutcome with the run's stage records. The marker goes up before anything heavy
    (building the asset graph takes ~60 MB), so a process killed while preparing, e.g. by an OS memory
    cap, still leaves a `died` record for its first planned stage. Without an instance, the one in the
    data root's Dagster home is opened (created and migrated once, under a lock) and closed after."""

    if instance is None:
        with open_instance(default_home(paths.root)) as opened:
            return _execute(prepare, paths, opened, dagster_log_level, plan, run_id)

    run_id = run_id or str(uuid.uuid4())
    try:
        with liveness.RunMarker(paths.running, run_id, plan["fields"], plan["stages"]):
            launch = prepare()
            result = launch(
                instance,
                # The process tag lets a later process see that this run's process died (defs/instance.py).
                {"kura_perf/source": "cli", **run_tags()},
                # Dagster's console logger would print full tracebacks; the CLI shows our progress lines
                # and a one-line reason instead. The event log in DAGSTER_HOME keeps everything.
                {"loggers": {"console": {"config": {"log_level": dagster_log_level}}}},
                run_id,
            )
    except BaseException as exc:
        if not is_interrupt(exc):
            raise
        return _interrupted(instance, paths, run_id, exc)
    failure, interrupted = None, False
    if not result.success:
        failed = [e for e in result.all_events if e.is_step_failure]
        errors = [(e.step_key, e.step_failure_data.error) for e in failed if e.step_failure_data and e.step_failure_data.error]
        failure = "; ".join(f"{step}: {root_cause(error)}" for step, error in errors) or "run failed"
        interrupted = any(root_cause(error).split(":")[0] in INTERRUPT_NAMES for _, error in errors)
        if interrupted:
            failure = "stopped by Ctrl-C or a termination request (" + "; ".join(step for step, _ in errors) + ")"
            _clear_markers(paths, result.run_id)
    return RunOutcome(result.run_id, result.success, failure, _records(paths, result.run_id), interrupted)


def _records(paths: Paths, run_id: str) -> list[dict] | None:
    """The run's stage records; None when they cannot be read back because the process is out of
    memory (a run that ended at a memory breaking point under an OS cap): they are in the store."""

    try:
        records = query(paths.metrics, "SELECT * FROM stage_runs WHERE run_id = ?", [run_id])
    except Exception as exc:
        if is_memory_exhaustion(exc):
            return None
        raise
    if len(records):  # stages run one after another: start time is pipeline order (a custom step included)
        records = records.sort_values(["started_at", "finished_at"])
    return records.to_dict("records") if len(records) else []


def _clear_markers(paths: Paths, run_id: str) -> None:
    """The interrupted stage wrote its record (status interrupted) and removed its marker; a marker its
    hook would have cleared is removed here, so it is never mistaken for a death."""
    for stage in (*STAGES, "custom_step"):  # a custom shape's step has its own marker
        liveness.clear(paths.running, run_id, stage)


def _interrupted(instance, paths: Paths, run_id: str, error: BaseException) -> RunOutcome:
    """Ctrl-C during a run: the interrupted stage wrote its record (status interrupted); clear what its
    hook would have, mark the Dagster run failed if Dagster left it unfinished, and say so. The run id
    was chosen before the run, so it is known even when Ctrl-C came before Dagster stored the run."""
    started = instance.get_run_by_id(run_id) is not None
    if started:
        _clear_markers(paths, run_id)
        fail_dead_runs(instance, [run_id], {run_id: f"interrupted ({type(error).__name__})"})
    return RunOutcome(run_id, False, f"stopped by {type(error).__name__} (Ctrl-C or a termination request)",
                      _records(paths, run_id) if started else [], interrupted=True)
