"""The Kura pipeline's stages as partitioned assets. Each body is a few lines: resolve the partition,
run the stage through the core runner (which measures it), return its figures as metadata."""

from dagster import AssetExecutionContext, AssetKey, MaterializeResult, MultiPartitionsDefinition, asset

from kura_perf.defs.config import PipelineShape
from kura_perf.defs.embeddings import build_embeddings_asset
from kura_perf.defs.hooks import STAGE_HOOKS
from kura_perf.defs.metadata import shape_metadata
from kura_perf.defs.resources import KuraPerfResource
from kura_perf.defs.simulator import ApiSimulatorResource
from kura_perf.pipeline.preflight import check_run_inputs
from kura_perf.pipeline.shapes import run_shape_stage
from kura_perf.scales import scale_count
from kura_perf.stages.base import STAGES, UPSTREAM

DESCRIPTIONS = {
    "conversations": "Conversations for the partition: synthetic (ground-truth topics) or the profile's data file.",
    "summaries": "Kura's per-conversation summary fields, from the profile's summary model.",
    "embeddings": "One vector per summary, from the profile's embedding model (.npy).",
    "clusters": "Base clusters with names and descriptions; clustering quality in the record.",
    "meta_clusters": "Kura's hierarchy: base clusters reduced to at most meta_max_clusters roots.",
    "projections": "2-D coordinates of every conversation (UMAP or PCA).",
}


def build_stage_asset(stage: str, partitions: MultiPartitionsDefinition):
    if stage == "embeddings":  # graph-backed: its fan-out into shards is part of the one definition
        return build_embeddings_asset(partitions, DESCRIPTIONS[stage])

    @asset(
        name=stage,
        partitions_def=partitions,
        deps=[AssetKey(up) for up in UPSTREAM[stage]],
        hooks=STAGE_HOOKS,
        group_name="kura_pipeline",
        kinds={"python"},
        description=DESCRIPTIONS[stage],
    )
    def _stage_asset(context: AssetExecutionContext, kura_perf: KuraPerfResource, api_simulator: ApiSimulatorResource,
                     pipeline_shape: PipelineShape) -> MaterializeResult:
        keys = context.partition_key.keys_by_dimension
        settings = pipeline_shape.settings(context.job_def.name)  # the shape job's (none: a plain stage run)
        run_settings = kura_perf.settings(simulator_url=api_simulator.base_url)
        profile = check_run_inputs(run_settings, keys["profile"], stages=[stage],
                                   scale_n=scale_count(keys["scale"]))  # a UI-launched run too
        outcome = run_shape_stage(stage, settings, profile, keys["scale"], context.run.run_id, run_settings)
        return MaterializeResult(metadata=shape_metadata(stage, settings, outcome))

    return _stage_asset


def build_stage_assets(partitions: MultiPartitionsDefinition) -> list:
    return [build_stage_asset(stage, partitions) for stage in STAGES]
