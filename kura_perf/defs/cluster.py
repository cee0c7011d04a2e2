"""Cluster jobs: the same stage assets as every other run, on Dagster's Celery executor (one step per
stage; the embeddings asset's fan-out, defs/embeddings.py, one step per shard that any worker can
pick up, merged in order).

    conversations -> summaries -> embeddings[plan ==> shard (x K) ==> merge] [-> clusters -> meta_clusters -> projections]

`cluster_embeddings` stops after the embeddings (the heavy part that fans out); `cluster_pipeline`
runs the rest of the partition too. The asset checks stay with the in-process jobs (their timings are
the benchmark's), so a cluster job selects the assets without them. The jobs are part of the one
Definitions (defs/build.py); a coordinator (defs/cluster_launch.py) hands the workers the same
profiles file through `reconstruct_cluster_job`, and each worker reads the rest from its own
environment (a worker may be another machine, with its own data root or results location).
"""

from dagster import AssetSelection, define_asset_job
from dagster_celery import celery_executor

from kura_perf.defs.config import EmbeddingsConfig
from kura_perf.defs.embeddings import CLUSTER_TAG, DEFAULT_SHARDS
from kura_perf.stages.base import STAGES

EXECUTORS = ("celery", "k8s")


def cluster_executor(kind: str):
    """celery (default: the Celery workers of `make cluster` / docker-compose) or, on Kubernetes
    (deploy/helm), k8s: Dagster's k8s_job_executor, one pod per step (needs dagster-k8s). From
    RunSettings.cluster_executor (KURA_PERF_CLUSTER_EXECUTOR), read where the definitions load: the
    deployment decides, not the run."""
    if kind == "k8s":
        from dagster_k8s import k8s_job_executor

        return k8s_job_executor
    if kind != "celery":
        raise ValueError(f"KURA_PERF_CLUSTER_EXECUTOR (RunSettings.cluster_executor) = {kind!r}: "
                         f"expected one of {', '.join(EXECUTORS)}")
    return celery_executor


_JOBS = {
    "cluster_embeddings": (STAGES[:STAGES.index("embeddings") + 1],
                           "One partition's conversations, summaries and sharded embeddings on the Celery workers."),
    "cluster_pipeline": (STAGES, "All stages of one partition on the Celery workers, embeddings fanned out in shards."),
}
CLUSTER_JOB_NAMES = tuple(_JOBS)


def cluster_run_config(shards: int = DEFAULT_SHARDS) -> dict:
    """The ops part of a cluster run's config: the embeddings asset's shard count (unset: DEFAULT_SHARDS)."""
    return {"ops": {"embeddings": {"config": EmbeddingsConfig(shards=shards).model_dump()}}}


def build_cluster_jobs(executor: str = "celery") -> list:
    """The cluster jobs: asset jobs over the stage assets (by key, so their partitions are those of the
    Definitions they are resolved in), on the cluster executor. No default run config (a job with one
    cannot be subset): the embeddings asset shards by DEFAULT_SHARDS on a job tagged as a cluster job."""
    return [define_asset_job(name, selection=AssetSelection.assets(*stages).without_checks(),
                             executor_def=cluster_executor(executor), tags={CLUSTER_TAG: "true"}, description=description)
            for name, (stages, description) in _JOBS.items()]

