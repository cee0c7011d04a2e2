"""Run one partition on a cluster: `kura-perf cluster run` and the tests call this. This process is
the run's coordinator (Dagster's Celery executor submits each step to the broker and waits); the
steps run on the Celery workers; everything is recorded in the Postgres-backed instance."""

from __future__ import annotations

from pathlib import Path

from kura_perf.defs.launch import RunOutcome, root_cause
from kura_perf.errors import KuraPerfError
from kura_perf.scales import scale_count
from kura_perf.services.local import check_services
from kura_perf.services.settings import ClusterSettings
from kura_perf.settings.paths import Paths
from kura_perf.settings.run import RunSettings
from kura_perf.stages.base import STAGES
from kura_perf.store import query


def run_on_cluster(settings: ClusterSettings, dagster_home: str | Path, scale: str, profile: str, shards: int = 4,
                   job: str = "cluster_embeddings", paths: Paths | None = None,
                   dagster_log_level: str = "CRITICAL", extra_tags: dict | None = None,
                   run_settings: RunSettings | None = None) -> RunOutcome:
    """run_settings: this coordinator's (default: from the environment, with `paths`); the workers
    rebuild the job with the same profiles file and read the rest from their own environment."""
    from dagster import DagsterInstance, build_reconstructable_job, execute_job

    from kura_perf.defs import cluster as cluster_defs
    from kura_perf.defs.partitions import benchmark_partitions, partition_key

    run_settings = run_settings or RunSettings.from_env(paths=paths)
    scale_count(scale)
    run_settings.profile(profile)
    if job not in cluster_defs.CLUSTER_JOB_NAMES:
        raise KuraPerfError(f"unknown cluster job '{job}'; expected one of {', '.join(cluster_defs.CLUSTER_JOB_NAMES)}")
    check_services(settings)  # a clear error naming Postgres or Redis, before Dagster tries either
    paths = run_settings.paths
    key = partition_key(scale, profile)
    partitions = benchmark_partitions(run_settings.profiles())
    tags = {**partitions.get_tags_for_partition_key(str(key)), "kura_perf/source": "cluster",
            **(extra_tags or {})}
    run_config = {
        "execution": {"config": settings.executor_config()},
        **cluster_defs.cluster_run_config(shards),  # the embeddings asset's shard count
        "loggers": {"console": {"config": {"log_level": dagster_log_level}}},
    }
    with DagsterInstance.from_config(str(dagster_home)) as instance:
        reconstructable_job = build_reconstructable_job(
            __name__, reconstruct_cluster_job.__name__,
            reconstructable_kwargs={"name": job, "profiles_file": run_settings.profiles_file})
        result = execute_job(reconstructable_job, instance=instance, run_config=run_config, tags=tags,
                             raise_on_error=False)
        failure = None
        if not result.success:
            failed = [e for e in result.all_events if e.is_step_failure]
            failure = "; ".join(f"{e.step_key}: {root_cause(e.step_failure_data.error)}" for e in failed
                                if e.step_failure_data and e.step_failure_data.error)
            if not failure:  # the coordinator failed (a worker-side error, a broker problem): say what
                run_failure = [e for e in result.all_events if e.event_type_value == "PIPELINE_FAILURE"]
                error = getattr(run_failure[0].event_specific_data, "error", None) if run_failure else None
                failure = (root_cause(error) if error else None) or (run_failure[0].message if run_failure
                                                                     else None) or "run failed"
        run_id = result.run_id
    records = query(paths.metrics, "SELECT * FROM stage_runs WHERE run_id = ?", [run_id])
    if len(records):
        records["order"] = records["stage"].map({s: i for i, s in enumerate(STAGES)})
        records = records.sort_values("order").drop(columns="order")
    return RunOutcome(run_id, result.success, failure, records.to_dict("records") if len(records) else [])


def reconstruct_cluster_job(name: str, profiles_file: str | None = None):
    """The cluster job `name` of the Definitions of `profiles_file` (the rest from this process's
    environment): what a coordinator points its workers at (dagster.build_reconstructable_job), so
    they rebuild the very job it launched."""
    from kura_perf.defs.build import build_definitions

    return build_definitions(RunSettings.from_env(profiles_file=profiles_file)).resolve_job_def(name)
