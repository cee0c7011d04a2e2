"""Hooks that make sure each stage has a record, on success and on failure, and clear its marker.

The stage writes its own record into the store as it ends (pipeline/metered.py). The failure hook
covers a step that failed before the stage could measure anything (say, a bad profile): it finds no
record of the stage in this run and writes one, built from the exception. They are attached to the
assets (not to a job), because a job's hooks do not fire when assets are materialized from the UI."""

from __future__ import annotations

from dagster import HookContext, failure_hook, success_hook

from kura_perf.meter.host import code_version, host_info, worker_identity
from kura_perf.pipeline.shapes import SHAPE_TAG
from kura_perf.scales import SCALES
from kura_perf.store import liveness, query
from kura_perf.store.stage_records import unfinished_record, write_stage_record


def _tags(context: HookContext) -> dict:
    run = context.instance.get_run_by_id(context.run_id)
    return dict(run.tags) if run else {}


def _partition(context: HookContext) -> tuple[str | None, str | None]:
    tags = _tags(context)
    return tags.get("dagster/partition/profile"), tags.get("dagster/partition/scale")


def _recorded(paths, context: HookContext) -> bool:
    """Whether the stage wrote its record in this run (one look at the store)."""

    rows = query(paths.metrics, "SELECT count(*) AS n FROM stage_runs WHERE run_id = ? AND stage = ?",
                 [context.run_id, _stage(context)])
    return bool(len(rows)) and int(rows["n"][0]) > 0


def _stage(context: HookContext) -> str:
    """The asset's op name, or the stage an op of the cluster jobs names in its kura_perf/stage tag."""
    return (getattr(context.op, "tags", None) or {}).get("kura_perf/stage", context.op.name)


def _record_unmeasured_failure(context: HookContext, paths) -> None:
    profile, scale = _partition(context)
    exc = context.op_exception
    while exc is not None and exc.__cause__ is not None:  # unwrap Dagster's step-execution wrapper
        exc = exc.__cause__
    write_stage_record(paths.metrics, unfinished_record(
        {"run_id": context.run_id, "stage": _stage(context), "shape": _tags(context).get(SHAPE_TAG),
         "profile": profile, "scale": scale, "scale_n": SCALES.get(scale or ""), "code_version": code_version(),
         "worker": worker_identity(), **host_info()},
        status="failed", error_type=type(exc).__name__ if exc else "Unknown",
        error_message=str(exc) if exc else "step failed before it was measured", metered=False,
    ))


@success_hook(required_resource_keys={"kura_perf"})
def record_stage_success(context: HookContext) -> None:
    paths = context.resources.kura_perf.paths()
    liveness.clear(paths.running, context.run_id, _stage(context))  # left only if the stage could not remove it


@failure_hook(required_resource_keys={"kura_perf"})
def record_stage_failure(context: HookContext) -> None:
    paths = context.resources.kura_perf.paths()
    if not _recorded(paths, context):
        _record_unmeasured_failure(context, paths)
    liveness.clear(paths.running, context.run_id, _stage(context))


STAGE_HOOKS = {record_stage_success, record_stage_failure}
