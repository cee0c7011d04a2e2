"""The run's pipeline shape as typed Dagster config.

The shape is the job's: each shape has its own job (defs/jobs.py; `benchmark_job` is the full
shape's), and an asset, check or op asks `job_shape(context.job_def.name)` (a run of the implicit
asset job, e.g. a UI materialization or `kura-perf run` without --shape, has none). The shape's
options are the run-level resource `pipeline_shape` (`PipelineShape`, typed fields the launchpad
shows and checks under `resources:`), so a run states them once for all its stages and checks, and
a job stays free of default run config (Dagster cannot subset a job that has one). The embeddings
asset has its own config, `EmbeddingsConfig` (how many shards its fan-out has). The logic behind the
fields is `kura_perf.pipeline.shapes.ShapeSettings`.
"""

from dagster import Config, ConfigurableResource
from pydantic import Field

from kura_perf.pipeline.shapes import SHAPES, ShapeSettings

BENCHMARK_JOB = "benchmark_job"
SHAPE_RESOURCE = "pipeline_shape"


def shape_job_name(shape: str) -> str:
    """The full shape's job is the benchmark job (what the nightly schedule runs); the others `<shape>_pipeline`."""
    return BENCHMARK_JOB if shape == "full" else f"{shape}_pipeline"


def job_shape(job_name: str | None) -> str | None:
    """The shape whose job `job_name` is; None for any other job (the implicit asset job, a cluster job)."""
    return next((shape for shape in SHAPES if shape_job_name(shape) == job_name), None)


class PipelineShape(ConfigurableResource):
    """The options of the run's shape (each unset: the profile's)."""

    custom_step: str | None = Field(default=None, description="custom shape: 'module:function' "
                                                                 "(default: the profile's custom_step.callable)")
    custom_after: str | None = Field(default=None, description="custom shape: the stage the step follows "
                                                                  "(default: the profile's custom_step.after)")
    stream_batch_size: int | None = Field(default=None, description="streaming shape: conversations per "
                                                                       "batch (default: the profile's)")

    def settings(self, job_name: str | None) -> ShapeSettings:
        """The validated shape of a run of `job_name` with these options (a bad option: a ProfileError naming it)."""
        return ShapeSettings(job_shape(job_name), self.custom_step, self.custom_after, self.stream_batch_size)


def shape_run_config(settings: ShapeSettings) -> dict:
    """The run config that gives a run the options of `settings` (its shape is the job's)."""
    options = {"custom_step": settings.custom_step, "custom_after": settings.custom_after,
               "stream_batch_size": settings.stream_batch_size}
    return {"resources": {SHAPE_RESOURCE: {"config": {k: v for k, v in options.items() if v is not None}}}}


class EmbeddingsConfig(Config):
    shards: int | None = Field(default=None, ge=0, description=(
        "0: the stage in one step; K > 0: the summaries split into K row ranges, one step each, merged in "
        "order; unset: 0, or the cluster job's default"))
