"""Hooks that move each stage's record into the metrics store, on success and on failure.

They are attached to the assets (not to a job), because a job's hooks do not fire when assets are
materialized from the UI. A failure that happened before the stage could measure anything (say,
a bad profile) still gets a record, built here from the exception."""

from __future__ import annotations

import uuid
from datetime import datetime, timezone

from dagster import HookContext, failure_hook, success_hook

from kura_perf.meter.host import code_version, host_info, worker_identity
from kura_perf.scales import SCALES
from kura_perf.pipeline.shapes import CUSTOM_STAGE, SHAPE_TAG
from kura_perf.store import liveness
from kura_perf.store.pending import commit_pending, write_stage_record
from kura_perf.store.record import StageRecord


def _tags(context: HookContext) -> dict:
    run = context.instance.get_run_by_id(context.run_id)
    return dict(run.tags) if run else {}


def _partition(context: HookContext) -> tuple[str | None, str | None]:
    tags = _tags(context)
    return tags.get("dagster/partition/profile"), tags.get("dagster/partition/scale")


def _commit(paths, context: HookContext) -> int:
    """Move the stage's record, and a custom step's run inside the same asset, into the store."""
    committed = 0
    for name in (_stage(context), CUSTOM_STAGE):
        if commit_pending(paths.pending, paths.metrics, context.run_id, name) is not None:
            committed += 1
    return committed


def _stage(context: HookContext) -> str:
    """The asset's op name, or the stage an op of the cluster jobs names in its kura_perf/stage tag."""
    return (getattr(context.op, "tags", None) or {}).get("kura_perf/stage", context.op.name)


def _record_unmeasured_failure(context: HookContext, paths) -> None:
    profile, scale = _partition(context)
    exc = context.op_exception
    while exc is not None and exc.__cause__ is not None:  # unwrap Dagster's step-execution wrapper
        exc = exc.__cause__
    now = datetime.now(timezone.utc)
    write_stage_record(paths.metrics, StageRecord(
        record_id=uuid.uuid4().hex, run_id=context.run_id, stage=_stage(context),
        shape=_tags(context).get(SHAPE_TAG),
        profile=profile, scale=scale, scale_n=SCALES.get(scale or ""),
        status="failed", error_type=type(exc).__name__ if exc else "Unknown",
        error_message=str(exc)[:2000] if exc else "step failed before it was measured",
        started_at=now, finished_at=now, metered=False, code_version=code_version(), worker=worker_identity(),
        **host_info(),
    ))


@success_hook(required_resource_keys={"kura_perf"})
def record_stage_success(context: HookContext) -> None:
    paths = context.resources.kura_perf.paths()
    if not _commit(paths, context) and _tags(context).get(SHAPE_TAG) != "custom":  # custom: resumed from a checkpoint
        context.log.warning(f"no stage record found for {_stage(context)} in run {context.run_id}")
    liveness.clear(paths.running, context.run_id, _stage(context))


@failure_hook(required_resource_keys={"kura_perf"})
def record_stage_failure(context: HookContext) -> None:
    paths = context.resources.kura_perf.paths()
    if not _commit(paths, context):
        _record_unmeasured_failure(context, paths)
    liveness.clear(paths.running, context.run_id, _stage(context))


STAGE_HOOKS = {record_stage_success, record_stage_failure}
