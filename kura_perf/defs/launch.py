"""Materialize one partition in-process: what `kura-perf run` calls. The same assets, hooks and checks
as the UI runs, so the CLI is not a second code path."""

from __future__ import annotations

from dataclasses import dataclass, field

from kura_perf.config import Paths
from kura_perf.stages.base import STAGES


@dataclass
class RunOutcome:
    run_id: str
    success: bool
    failure: str | None
    records: list[dict] = field(default_factory=list)


def root_cause(error) -> str:
    """The user's error inside Dagster's wrappers: 'ProfileError: ...', not 'Error occurred while executing op'."""
    while getattr(error, "cause", None) is not None:
        error = error.cause
    message = error.message.strip().splitlines()[-1] if error.message.strip() else ""
    prefix, _, rest = message.partition(": ")
    if rest and prefix.rsplit(".", 1)[-1] == error.cls_name:  # Dagster repeats "module.Class: " in the text
        message = rest
    return f"{error.cls_name}: {message}"


def run_partition(scale: str, profile: str, stages: list[str] | None = None, paths: Paths | None = None,
                  instance=None, dagster_log_level: str = "CRITICAL", extra_assets: list[str] | None = None,
                  asset_config: dict | None = None) -> RunOutcome:
    """Materialize `stages` (default: all six) plus `extra_assets` (e.g. the sweep) for one partition.
    asset_config: {asset name: its config dict}."""
    from dagster import AssetKey, DagsterInstance, materialize

    from kura_perf.defs.partitions import partition_key
    from kura_perf.defs.resources import KuraPerfResource
    from kura_perf.definitions import defs
    from kura_perf.errors import KuraPerfError

    paths = paths or Paths.from_env()
    unknown = set(stages or []) - set(STAGES)
    if unknown:
        raise KuraPerfError(f"unknown stage(s) {sorted(unknown)}; expected some of {', '.join(STAGES)}")
    selection = [AssetKey(s) for s in [*(STAGES if stages is None else stages), *(extra_assets or [])]]
    resources = {**defs.resources, "kura_perf": KuraPerfResource(home=str(paths.root))}
    result = materialize(
        [*defs.assets, *(defs.asset_checks or [])],
        selection=selection,
        partition_key=partition_key(scale, profile),
        instance=instance or DagsterInstance.get(),
        resources=resources,
        raise_on_error=False,
        tags={"kura_perf/source": "cli"},
        # Dagster's console logger would print full tracebacks; the CLI shows our progress lines
        # and a one-line reason instead. The event log in DAGSTER_HOME keeps everything.
        run_config={"loggers": {"console": {"config": {"log_level": dagster_log_level}}},
                    "ops": {name: {"config": cfg} for name, cfg in (asset_config or {}).items()}},
    )
    return _outcome(result, paths)


def run_shape(shape: str, scale: str, profile: str, paths: Paths | None = None, instance=None,
              settings=None, dagster_log_level: str = "CRITICAL") -> RunOutcome:
    """Execute the named job of a pipeline shape (`<shape>_pipeline`) on one partition, in-process:
    the job the UI launches, with the shape's options (custom step, batch size) as run tags."""
    from dagster import DagsterInstance

    from kura_perf.defs.jobs import shape_job_name
    from kura_perf.defs.partitions import partition_key
    from kura_perf.defs.resources import KuraPerfResource
    from kura_perf.definitions import defs
    from kura_perf.shapes import ShapeSettings

    paths = paths or Paths.from_env()
    settings = settings or ShapeSettings(shape)
    job = defs.resolve_job_def(shape_job_name(shape))
    result = job.execute_in_process(
        partition_key=partition_key(scale, profile),
        instance=instance or DagsterInstance.get(),
        resources={**defs.resources, "kura_perf": KuraPerfResource(home=str(paths.root))},
        raise_on_error=False,
        tags={"kura_perf/source": "cli", **settings.tags()},
        run_config={"loggers": {"console": {"config": {"log_level": dagster_log_level}}}},
    )
    return _outcome(result, paths)


def _outcome(result, paths: Paths) -> RunOutcome:
    from kura_perf.store import query

    failure = None
    if not result.success:
        failed = [e for e in result.all_events if e.is_step_failure]
        failure = "; ".join(f"{e.step_key}: {root_cause(e.step_failure_data.error)}" for e in failed
                            if e.step_failure_data and e.step_failure_data.error) or "run failed"
    records = query(paths.metrics, "SELECT * FROM stage_runs WHERE run_id = ?", [result.run_id])
    if len(records):  # stages run one after another: start time is pipeline order (a custom step included)
        records = records.sort_values(["started_at", "finished_at"])
    return RunOutcome(result.run_id, result.success, failure, records.to_dict("records") if len(records) else [])

