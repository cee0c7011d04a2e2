"""The pipeline's jobs: one per shape (`benchmark_job` is the full shape's), plus the report.

In-process, so stages run one after another with nothing else of the run competing for the CPU:
a multiprocess executor would start check steps and stage steps side by side and disturb timings.
The cluster jobs (defs/cluster.py) select the same assets with the Celery executor.
"""

from dagster import AssetSelection, define_asset_job, in_process_executor

from kura_perf.defs.config import BENCHMARK_JOB, shape_job_name
from kura_perf.pipeline.shapes import SHAPE_TAG, SHAPES, Shape
from kura_perf.stages.base import STAGES

BENCHMARK_TAG = "kura_perf/benchmark"
__all__ = ["BENCHMARK_JOB", "BENCHMARK_TAG", "benchmark_job", "report_job", "shape_job_name", "shape_jobs"]


def shape_stages(shape: str) -> list[str]:
    return [stage for stage in STAGES if stage in SHAPES[shape].stages]


def build_shape_job(shape: Shape):
    """One named job per pipeline shape: the job is the shape (defs/config.py, `job_shape`); its options
    (custom step, batch size) are the typed `pipeline_shape` resource config of the run. Launch it on a
    partition from the UI (Jobs -> the job -> Materialize; options in the launchpad under resources) or
    with `kura-perf run --shape <shape>`. The tag labels the job's runs (sensors, the stage hooks)."""
    selected = shape_stages(shape.name)
    return define_asset_job(
        shape_job_name(shape.name),
        # By key: the assets (and their partitions) are those of the Definitions the job is resolved in;
        # the selection includes the stages' asset checks.
        selection=AssetSelection.assets(*selected),
        executor_def=in_process_executor,
        tags={BENCHMARK_TAG: "true", SHAPE_TAG: shape.name},
        description=("Materialize and check all stages of one scale x profile partition (the full shape)."
                     if shape.name == "full" else f"Pipeline shape '{shape.name}': {shape.description}"),
    )


shape_jobs = [build_shape_job(shape) for shape in SHAPES.values()]
benchmark_job = next(job for job in shape_jobs if job.name == BENCHMARK_JOB)

report_job = define_asset_job(
    "report_job",
    selection=AssetSelection.assets("performance_report"),
    executor_def=in_process_executor,
    description="Rebuild the performance report from the metrics store.",
)
