"""The embeddings stage as a graph-backed asset: the one definition of the stage, in-process and on
a cluster alike.

    embeddings_plan ==> embeddings_shard (x K, mapped; dynamic outputs) ==> embeddings_merge

With `shards: 0` (the default of every in-process run: `kura-perf run`, the UI, the shape jobs) the
plan has no shards and `embeddings_merge` runs the whole stage the way every other stage asset does
(shapes included). With `shards: K` (the default of the cluster jobs, defs/cluster.py) the summaries are split into K contiguous row ranges,
one step each, that any Celery worker can pick up, and the merge concatenates them in order; the
stage record sums them (kura_perf/pipeline/shards.py, no Dagster there).

Faults: `embeddings_shard` has a RetryPolicy (an exception in the shard, e.g. an API outage, is
retried as a new step attempt); a worker that dies mid-step is covered by Celery's late
acknowledgement (see `kura_perf.services.settings`). Values between the ops are small (the plan,
row ranges, shard records) and are pickled under the shared results root (`SharedPickleIOManager`),
because cluster steps run in other processes, maybe on other machines.
"""


import io
import pickle

from dagster import (
    AssetIn,
    ConfigurableIOManager,
    DynamicOut,
    DynamicOutput,
    In,
    InputContext,
    MultiPartitionsDefinition,
    Nothing,
    OpExecutionContext,
    Out,
    Output,
    OutputContext,
    ResourceDependency,
    RetryPolicy,
    config_mapping,
    graph_asset,
    op,
)

from kura_perf.defs.config import EmbeddingsConfig, PipelineShape
from kura_perf.defs.hooks import STAGE_HOOKS, record_stage_failure
from kura_perf.defs.metadata import shape_metadata, stage_metadata
from kura_perf.defs.resources import KuraPerfResource
from kura_perf.defs.simulator import ApiSimulatorResource
from kura_perf.errors import ProfileError
from kura_perf.files import outputs
from kura_perf.files.atomic import atomic_write_bytes
from kura_perf.files.location import Location
from kura_perf.pipeline.preflight import check_run_inputs
from kura_perf.pipeline.runner import StageRun
from kura_perf.pipeline.shapes import run_shape_stage
from kura_perf.pipeline.shards import ShardSpec, merge_embedding_shards, plan_shards, run_embedding_shard
from kura_perf.scales import scale_count

STAGE = "embeddings"
SHARD_IO = "shard_io_manager"
CLUSTER_TAG = "kura_perf/cluster"  # the role of an op in the fan-out (plan, shard, merge); "true" on a cluster job
DEFAULT_SHARDS = 4  # a cluster job's, when its run config does not say
STAGE_TAG = "kura_perf/stage"  # names the stage for the stage hooks (the op names are not the stage's)
# What one embedding shard asks of a Kubernetes node (the k8s executor reads this tag; others ignore it).
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


def _partition(context: OpExecutionContext) -> tuple[str, str]:
    keys = context.partition_key.keys_by_dimension
    return keys["scale"], keys["profile"]


def _run_settings(kura_perf: KuraPerfResource, api_simulator: ApiSimulatorResource):
    return kura_perf.settings(simulator_url=api_simulator.base_url)


def _stage_run(context: OpExecutionContext, kura_perf: KuraPerfResource, api_simulator: ApiSimulatorResource):
    """The sharded stage's StageRun, on whichever process runs the step (its data root, its data file)."""
    scale, profile = _partition(context)
    settings = _run_settings(kura_perf, api_simulator)
    checked = check_run_inputs(settings, profile, stages=[STAGE], scale_n=scale_count(scale))
    return StageRun(STAGE, checked, scale, run_id=context.run.run_id, settings=settings)


@op(name="embeddings_plan", ins={"after": In(Nothing)}, tags={CLUSTER_TAG: "plan", STAGE_TAG: STAGE},
    out={"plan": Out(dict, io_manager_key=SHARD_IO), "shards": DynamicOut(dict, io_manager_key=SHARD_IO)},
    description="The run's shard count; with shards, one dynamic output per contiguous row range.")
def plan_embeddings(context: OpExecutionContext, config: EmbeddingsConfig, kura_perf: KuraPerfResource,
                    api_simulator: ApiSimulatorResource, pipeline_shape: PipelineShape):
    settings = pipeline_shape.settings(context.job_def.name)  # a bad shape option fails here, before any work
    shards = config.shards
    if shards is None:  # unset: sharded on a cluster job, in one step anywhere else
        shards = DEFAULT_SHARDS if context.job_def.tags.get(CLUSTER_TAG) == "true" else 0
    if shards and settings.shape not in (None, "full"):
        raise ProfileError(f"shards: the embeddings fan-out runs the full shape only, not '{settings.shape}'")
    yield Output({"shards": shards}, "plan")
    if not shards:
        return
    run = _stage_run(context, kura_perf, api_simulator)
    rows = len(outputs.read_stage(run.folder, "summaries").tables["main"])
    for spec in plan_shards(rows, shards):
        yield DynamicOutput(spec.as_dict(), mapping_key=spec.key.replace("-", "_"), output_name="shards")


@op(name="embeddings_shard", retry_policy=RetryPolicy(max_retries=2, delay=1.0),
    out=Out(dict, io_manager_key=SHARD_IO), tags={CLUSTER_TAG: "shard", "dagster-k8s/config": SHARD_K8S_CONFIG},
    description="Embed one shard on whichever worker runs this step; metered; a row in shard_runs.")
def embed_shard(context: OpExecutionContext, spec: dict, kura_perf: KuraPerfResource,
                api_simulator: ApiSimulatorResource) -> dict:
    record = run_embedding_shard(_stage_run(context, kura_perf, api_simulator), ShardSpec.from_dict(spec))
    context.add_output_metadata({"rows": spec["stop"] - spec["start"], "wall_s": round(record["wall_s"], 3),
                                 "worker": record["worker"]})
    return record


@op(name="embeddings_merge", out=Out(Nothing), tags={CLUSTER_TAG: "merge", STAGE_TAG: STAGE},
    description="Without shards: the whole stage (core runner, metered, recorded by the stage hooks). With "
                "shards: their outputs concatenated in order; the stage record sums them.")
def merge_embeddings(context: OpExecutionContext, plan: dict, shard_records: list[dict], kura_perf: KuraPerfResource,
                     api_simulator: ApiSimulatorResource, pipeline_shape: PipelineShape) -> None:
    if not plan["shards"]:
        settings = pipeline_shape.settings(context.job_def.name)
        scale, profile_name = _partition(context)
        run_settings = _run_settings(kura_perf, api_simulator)
        profile = check_run_inputs(run_settings, profile_name, stages=[STAGE], scale_n=scale_count(scale))
        outcome = run_shape_stage(STAGE, settings, profile, scale, context.run.run_id, run_settings)
        context.add_output_metadata(shape_metadata(STAGE, settings, outcome))
        return
    specs = [ShardSpec(r["shard_index"], r["shard_count"], r["row_start"], r["row_stop"]) for r in shard_records]
    record = merge_embedding_shards(_stage_run(context, kura_perf, api_simulator), specs, shard_records)
    context.add_output_metadata(stage_metadata(record) | {"worker": record.worker or "", "shards": len(specs)})


def build_embeddings_asset(partitions: MultiPartitionsDefinition, description: str):
    @config_mapping
    def _config(config: EmbeddingsConfig) -> dict:
        """The asset's config (run config `ops: embeddings: config:`), handed to the plan."""
        return {"embeddings_plan": {"config": config.model_dump()}}

    @graph_asset(name=STAGE, partitions_def=partitions, ins={"summaries": AssetIn(dagster_type=Nothing)},
                 config=_config, group_name="kura_pipeline", kinds={"python"}, description=description)
    def embeddings(summaries):
        # The plan's failure is the stage's failure (its hook records it); the merge does the stage's work.
        plan, shards = plan_embeddings.with_hooks({record_stage_failure})(after=summaries)
        return merge_embeddings.with_hooks(STAGE_HOOKS)(plan, shards.map(embed_shard).collect())

    return embeddings
