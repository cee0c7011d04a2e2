"""The nightly benchmark: one run per configured partition, every day at 02:00 UTC.

Runs are queued, not run side by side: the instance's run queue allows one run at a time
(dagster.yaml `run_queue: max_concurrent_runs: 1`, written by `kura-perf` into DAGSTER_HOME),
so nightly partitions do not disturb each other's timings.
"""

from __future__ import annotations

import os

from dagster import DefaultScheduleStatus, MultiPartitionsDefinition, RunRequest, ScheduleEvaluationContext, schedule

from kura_perf.defs.jobs import benchmark_job
from kura_perf.defs.partitions import partition_key
from kura_perf.errors import KuraPerfError

NIGHTLY_ENV = "KURA_PERF_NIGHTLY"
DEFAULT_NIGHTLY = "offline:100,offline:1k,offline:10k"


def nightly_partitions(partitions: MultiPartitionsDefinition, spec: str | None = None) -> list[tuple[str, str]]:
    """[(profile, scale)] from "profile:scale,..." (env KURA_PERF_NIGHTLY), validated against `partitions`."""
    spec = spec if spec is not None else os.environ.get(NIGHTLY_ENV) or DEFAULT_NIGHTLY
    valid = set(partitions.get_partition_keys())
    out = []
    for item in filter(None, (part.strip() for part in spec.split(","))):
        profile, _, scale = item.partition(":")
        if str(partition_key(scale.strip(), profile.strip())) not in valid:
            raise KuraPerfError(f"{NIGHTLY_ENV}: '{item}' is not a partition (expected profile:scale, "
                                f"e.g. offline:1k)")
        out.append((profile.strip(), scale.strip()))
    return out


def build_nightly_schedule(partitions: MultiPartitionsDefinition):
    """The nightly schedule over `partitions` (the definitions' own, so a configured one is checked
    against what the UI shows)."""

    @schedule(cron_schedule="0 2 * * *", execution_timezone="UTC", job=benchmark_job, name="nightly_benchmark",
              default_status=DefaultScheduleStatus.RUNNING,
              description=f"Nightly runs of the partitions in ${NIGHTLY_ENV} (default {DEFAULT_NIGHTLY}).")
    def nightly_benchmark(context: ScheduleEvaluationContext):
        day = context.scheduled_execution_time.strftime("%Y-%m-%d")
        for profile, scale in nightly_partitions(partitions):
            key = partition_key(scale, profile)
            yield RunRequest(run_key=f"nightly-{day}-{key}", partition_key=key,
                             tags={"kura_perf/trigger": "nightly", "kura_perf/night": day})

    return nightly_benchmark
