"""The nightly benchmark: one run per configured partition, every day at 02:00 UTC.

Runs are queued, not run side by side: the instance's run queue allows one run at a time
(dagster.yaml `run_queue: max_concurrent_runs: 1`, written by `kura-perf` into DAGSTER_HOME),
so nightly partitions do not disturb each other's timings.

Which partitions: RunSettings.nightly (KURA_PERF_NIGHTLY, read with the rest of the settings where the
code location builds its definitions, `kura_perf/definitions.py`), checked when the schedule is built.
"""

from __future__ import annotations

from dagster import DefaultScheduleStatus, MultiPartitionsDefinition, RunRequest, ScheduleEvaluationContext, schedule

from kura_perf.defs.jobs import benchmark_job
from kura_perf.defs.partitions import partition_key
from kura_perf.errors import KuraPerfError
from kura_perf.settings.environment import NIGHTLY_ENV

DEFAULT_NIGHTLY = "offline:100,offline:1k,offline:10k"


def nightly_partitions(partitions: MultiPartitionsDefinition, spec: str | None) -> list[tuple[str, str]]:
    """[(profile, scale)] from "profile:scale,..." (RunSettings.nightly; None or empty: DEFAULT_NIGHTLY),
    validated against `partitions`."""
    spec = spec or DEFAULT_NIGHTLY
    valid = set(partitions.get_partition_keys())
    out = []
    for item in filter(None, (part.strip() for part in spec.split(","))):
        profile, _, scale = item.partition(":")
        if str(partition_key(scale.strip(), profile.strip())) not in valid:
            raise KuraPerfError(f"{NIGHTLY_ENV}: '{item}' is not a partition (expected profile:scale, "
                                f"e.g. offline:1k)")
        out.append((profile.strip(), scale.strip()))
    return out


def build_nightly_schedule(partitions: MultiPartitionsDefinition, spec: str | None):
    """The nightly schedule over `partitions` (the definitions' own, so a configured one is checked
    against what the UI shows) requesting the partitions `spec` names (RunSettings.nightly)."""

    @schedule(cron_schedule="0 2 * * *", execution_timezone="UTC", job=benchmark_job, name="nightly_benchmark",
              default_status=DefaultScheduleStatus.RUNNING,
              description=f"Nightly runs of the partitions in ${NIGHTLY_ENV} (default {DEFAULT_NIGHTLY}).")
    def nightly_benchmark(context: ScheduleEvaluationContext):
        day = context.scheduled_execution_time.strftime("%Y-%m-%d")
        for profile, scale in nightly_partitions(partitions, spec):
            key = partition_key(scale, profile)
            yield RunRequest(run_key=f"nightly-{day}-{key}", partition_key=key,
                             tags={"kura_perf/trigger": "nightly", "kura_perf/night": day})

    return nightly_benchmark
