"""The Definitions of one RunSettings: the profile partitions and the resources' settings come from
the same object, so the partitions the UI shows and the profiles the assets run are one source.
`kura_perf/definitions.py` builds them from the environment for `dagster dev`; the CLI builds them
from its own settings (its --profiles) for the runs it executes in-process."""

from __future__ import annotations

import functools

from dagster import Definitions, in_process_executor

from kura_perf.defs.partitions import benchmark_partitions
from kura_perf.defs.resources import KuraPerfResource
from kura_perf.defs.simulator import ApiSimulatorResource
from kura_perf.settings.run import RunSettings


def resources_for(settings: RunSettings) -> dict:
    """The resources of a run with `settings`: every field fixed, so the assets see exactly these."""
    from kura_perf.defs.config import SHAPE_RESOURCE, PipelineShape
    from kura_perf.defs.embeddings import SHARD_IO, SharedPickleIOManager

    kura_perf = KuraPerfResource.from_settings(settings)
    return {"kura_perf": kura_perf, "api_simulator": ApiSimulatorResource(kura_perf=kura_perf),
            SHAPE_RESOURCE: PipelineShape(), SHARD_IO: SharedPickleIOManager(kura_perf=kura_perf)}


def build_definitions(settings: RunSettings) -> Definitions:
    return _definitions(tuple(settings.profiles()), settings)


@functools.lru_cache(maxsize=8)
def _definitions(profile_names: tuple[str, ...], settings: RunSettings) -> Definitions:
    """Cached per profile list and settings: building and resolving the asset graph takes a while, and
    a process (the CLI, the tests) asks for the same definitions again and again."""
    from kura_perf.defs.assets import build_stage_assets
    from kura_perf.defs.checks import build_all_stage_checks
    from kura_perf.defs.jobs import report_job, shape_jobs
    from kura_perf.defs.kura_versions import build_kura_nightly_schedule, kura_versions_job
    from kura_perf.defs.report import performance_report
    from kura_perf.defs.schedules import build_nightly_schedule
    from kura_perf.defs.sensors import reap_dead_runs, refresh_after_benchmark, regression_alerts
    from kura_perf.defs.stress import stress_assets
    from kura_perf.defs.sweep import build_sweep_asset
    from kura_perf.defs.usability import usability_assets

    partitions = benchmark_partitions(profile_names)
    try:  # the cluster jobs need the `cluster` extra (dagster-celery); without it, everything else still loads
        from kura_perf.defs.cluster import build_cluster_jobs

        cluster_jobs = build_cluster_jobs(settings.cluster_executor)
    except ImportError:  # pragma: no cover - depends on the installed extras
        cluster_jobs = []
    return Definitions(
        assets=[*build_stage_assets(partitions), build_sweep_asset(partitions), performance_report,
                *usability_assets, *stress_assets],
        asset_checks=build_all_stage_checks(partitions),
        jobs=[*shape_jobs, report_job, kura_versions_job, *cluster_jobs],  # shape_jobs: benchmark_job (full) and the other shapes
        schedules=[build_nightly_schedule(partitions, settings.nightly),
                   build_kura_nightly_schedule(settings.nightly_kura)],
        sensors=[regression_alerts, reap_dead_runs, refresh_after_benchmark],
        resources=resources_for(settings),
        # Also for UI materializations (the implicit asset job): stages one after another, undisturbed.
        # The cluster jobs set their own executor.
        executor=in_process_executor,
    )
