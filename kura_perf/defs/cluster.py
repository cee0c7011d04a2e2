"""Cluster jobs: one partition's stages as ops on Dagster's Celery executor, with the embeddings
fanned out into shards (dynamic outputs) that any worker can pick up and merged in order.

    conversations_step -> summaries_step -> embedding_shards ==> embed_shard (x K, mapped)
        ==> embeddings_merge [-> clusters_step -> meta_clusters_step -> projections_step]

`cluster_embeddings` stops after the merge (the heavy part that fans out); `cluster_pipeline` runs
the rest of the partition too (`build_cluster_jobs(partitions, profiles_file)`; a coordinator hands
the workers the same profiles file through `reconstruct_cluster_job`). Stage ops go through the same core runner and hooks as the assets
and report an AssetMaterialization of the same asset and partition, so the UI's partition grid shows
cluster runs beside in-process ones. Shard logic lives in `kura_perf.pipeline.shards` (no Dagster there).

Faults: `embed_shard` has a RetryPolicy (an exception in the shard, e.g. an API outage, is retried
as a new step attempt); a worker that dies mid-step is covered by Celery's late acknowledgement
(the task goes back to the broker and another worker runs it; see `kura_perf.services.settings`).
Values between ops are small (row ranges, records) and are pickled under the shared results root,
because Celery steps run in other processes, maybe on other machines.
"""


import io
import os
import pickle

from dagster import (
    AssetKey,
    AssetMaterialization,
    Config,
    ConfigurableIOManager,
    DynamicOut,
    DynamicOutput,
    In,
    InputContext,
    MultiPartitionsDefinition,
    Nothing,
    OpExecutionContext,
    OutputContext,
    ResourceDependency,
    RetryPolicy,
    job,
    op,
)
from dagster_celery import celery_executor

from kura_perf.defs.assets import stage_metadata
from kura_perf.defs.hooks import STAGE_HOOKS
from kura_perf.defs.partitions import benchmark_partitions
from kura_perf.defs.resources import KuraPerfResource
from kura_perf.files.atomic import atomic_write_bytes
from kura_perf.files.location import Location
from kura_perf.pipeline.runner import StageRun, run_stage
from kura_perf.pipeline.shards import ShardSpec, merge_embedding_shards, plan_shards, run_embedding_shard
from kura_perf.settings.run import RunSettings
from kura_perf.store.record import StageRecord

CLUSTER_TAG = "kura_perf/cluster"
# Op names must differ from the stage assets' ops in one repository; this tag names the stage for
# the stage hooks.
STAGE_TAG = "kura_perf/stage"
EXECUTOR_ENV = "KURA_PERF_CLUSTER_EXECUTOR"


def cluster_executor():
    """celery (default: the Celery workers of `make cluster` / docker-compose) or, on Kubernetes
    (deploy/helm), k8s: Dagster's k8s_job_executor, one pod per step (needs dagster-k8s). Read
    once, where the definitions load: the deployment decides, not the run."""
    kind = os.environ.get(EXECUTOR_ENV, "celery")
    if kind == "k8s":
        from dagster_k8s import k8s_job_executor

        return k8s_job_executor
    if kind != "celery":
        raise ValueError(f"{EXECUTOR_ENV}={kind!r}: expected 'celery' or 'k8s'")
    return celery_executor


# What one embedding shard asks of a Kubernetes node (the k8s executor reads this tag; Celery ignores it).
SHARD_K8S_CONFIG = {"container_config": {"resources": {"requests": {"cpu": "2", "memory": "3Gi"},
                                                       "limits": {"memory": "6Gi"}}}}


class SharedPickleIOManager(ConfigurableIOManager):
    """Op outputs as pickles under <results root>/cluster_io/<run>/<step>/<output>[/<mapping key>]:
    a place every worker reaches (a shared path or an fsspec URL)."""

    kura_perf: ResourceDependency[KuraPerfResource]

    def _path(self, identifier: list[str]):
        path = self.kura_perf.paths().results_root / "cluster_io"
        for part in identifier:
            path = path / part
        return path

    def handle_output(self, context: OutputContext, obj) -> None:
        path = self._path(list(context.get_identifier()))
        blob = pickle.dumps(obj)
        if isinstance(path, Location):
            path.write_bytes(blob)
            return
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(path, blob)

    def load_input(self, context: InputContext):
        return pickle.load(io.BytesIO(self._path(list(context.upstream_output.get_identifier())).read_bytes()))


def _partition(context) -> tuple[str, str]:
    tags = context.run.tags
    if "dagster/partition/scale" in tags:
        return tags["dagster/partition/scale"], tags["dagster/partition/profile"]
    keys = context.job_def.partitions_def.get_partition_key_from_str(tags["dagster/partition"]).keys_by_dimension
    return keys["scale"], keys["profile"]


def _stage_run(context: OpExecutionContext, kura_perf: KuraPerfResource, stage: str) -> StageRun:
    from kura_perf.pipeline.preflight import check_run_inputs

    scale, profile = _partition(context)
    settings = kura_perf.settings()
    checked = check_run_inputs(settings, profile, stages=[stage])  # on the worker: its data root and data file
    return StageRun(stage, checked, scale, run_id=context.run.run_id, settings=settings)


def _materialized(context: OpExecutionContext, stage: str, record: StageRecord) -> None:
    context.log_event(AssetMaterialization(AssetKey(stage), partition=context.run.tags.get("dagster/partition"),
                                           metadata=stage_metadata(record) | {"worker": record.worker or ""}))


def _stage_op(stage: str, after: bool):
    ins = {"after": In(Nothing)} if after else {}

    @op(name=f"{stage}_step", ins=ins, tags={CLUSTER_TAG: "stage", STAGE_TAG: stage},
        description=f"The {stage} stage of the run's partition (core runner, metered, recorded by the stage hooks).")
    def _op(context: OpExecutionContext, kura_perf: KuraPerfResource) -> None:
        record = run_stage(_stage_run(context, kura_perf, stage))
        _materialized(context, stage, record)

    return _op


conversations_op = _stage_op("conversations", after=False)
summaries_op = _stage_op("summaries", after=True)
clusters_op = _stage_op("clusters", after=True)
meta_clusters_op = _stage_op("meta_clusters", after=True)
projections_op = _stage_op("projections", after=True)


class ShardConfig(Config):
    """shards: how many pieces the partition's embeddings are split into (one step each)."""

    shards: int = 4


@op(ins={"after": In(Nothing)}, out=DynamicOut(dict), tags={CLUSTER_TAG: "plan"})
def embedding_shards(context: OpExecutionContext, config: ShardConfig, kura_perf: KuraPerfResource):
    """Split the partition's summaries into `shards` contiguous row ranges, one dynamic output each."""
    from kura_perf.files import outputs

    run = _stage_run(context, kura_perf, "embeddings")
    rows = len(outputs.read_stage(run.folder, "summaries").tables["main"])
    for spec in plan_shards(rows, config.shards):
        yield DynamicOutput(spec.as_dict(), mapping_key=spec.key.replace("-", "_"))


@op(retry_policy=RetryPolicy(max_retries=2, delay=1.0),
    tags={CLUSTER_TAG: "shard", "dagster-k8s/config": SHARD_K8S_CONFIG})
def embed_shard(context: OpExecutionContext, spec: dict, kura_perf: KuraPerfResource) -> dict:
    """Embed one shard on whichever worker runs this step; metered; a row in shard_runs."""
    record = run_embedding_shard(_stage_run(context, kura_perf, "embeddings"), ShardSpec.from_dict(spec))
    context.add_output_metadata({"rows": spec["stop"] - spec["start"], "wall_s": round(record["wall_s"], 3),
                                 "worker": record["worker"]})
    return record


@op(name="embeddings_merge", tags={CLUSTER_TAG: "merge", STAGE_TAG: "embeddings"})
def merge_embeddings(context: OpExecutionContext, shard_records: list[dict], kura_perf: KuraPerfResource) -> None:
    """Concatenate the shards in order into the partition's embeddings; the stage record sums them."""
    run = _stage_run(context, kura_perf, "embeddings")
    specs = [ShardSpec(r["shard_index"], r["shard_count"], r["row_start"], r["row_stop"]) for r in shard_records]
    record = merge_embedding_shards(run, specs, shard_records)
    _materialized(context, "embeddings", record)


def _embeddings_fanout():
    summaries = summaries_op.with_hooks(STAGE_HOOKS)(after=conversations_op.with_hooks(STAGE_HOOKS)())
    records = embedding_shards(after=summaries).map(embed_shard).collect()
    return merge_embeddings.with_hooks(STAGE_HOOKS)(records)


def _embeddings_only():
    _embeddings_fanout()


def _all_stages():
    clusters = clusters_op.with_hooks(STAGE_HOOKS)(after=_embeddings_fanout())
    meta = meta_clusters_op.with_hooks(STAGE_HOOKS)(after=clusters)
    projections_op.with_hooks(STAGE_HOOKS)(after=meta)


_GRAPHS = {
    "cluster_embeddings": (_embeddings_only,
                           "One partition's conversations, summaries and sharded embeddings on the Celery workers."),
    "cluster_pipeline": (_all_stages,
                         "All stages of one partition on the Celery workers, embeddings fanned out in shards."),
}
CLUSTER_JOB_NAMES = tuple(_GRAPHS)


def build_cluster_jobs(partitions: MultiPartitionsDefinition, profiles_file: str | None = None) -> dict:
    """The cluster jobs over `partitions`. Their resources are bound to the job (not only in Definitions)
    so a job rebuilt by `reconstruct_cluster_job` on a worker is complete; only the profiles file is
    fixed here, everything else each process reads from its own environment (a worker may be another
    machine, with its own data root or results location)."""
    resources = {"kura_perf": KuraPerfResource(profiles_file=profiles_file),
                 "io_manager": SharedPickleIOManager(kura_perf=KuraPerfResource(profiles_file=profiles_file))}
    return {name: job(name=name, partitions_def=partitions, executor_def=cluster_executor(),
                      tags={CLUSTER_TAG: "true"}, resource_defs=resources, description=description)(graph)
            for name, (graph, description) in _GRAPHS.items()}


def reconstruct_cluster_job(name: str, profiles_file: str | None = None):
    """The cluster job `name` with the partitions of `profiles_file`: what a coordinator points its
    workers at (dagster.build_reconstructable_job), so they rebuild the very job it launched."""
    settings = RunSettings.from_env(profiles_file=profiles_file)
    return build_cluster_jobs(benchmark_partitions(settings.profiles()), settings.profiles_file)[name]

