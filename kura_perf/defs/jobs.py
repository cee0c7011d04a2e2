"""The benchmark job: every stage asset of one partition, with its checks, in one process.

In-process, so stages run one after another with nothing else of the run competing for the CPU:
a multiprocess executor would start check steps and stage steps side by side and disturb timings.
"""

from dagster import AssetSelection, define_asset_job, in_process_executor

from kura_perf.pipeline.shapes import SHAPE_TAG, SHAPES, Shape
from kura_perf.stages.base import STAGES

BENCHMARK_TAG = "kura_perf/benchmark"

benchmark_job = define_asset_job(
    "benchmark_job",
    # By key: the assets (and their partitions) are those of the Definitions the job is resolved in.
    selection=AssetSelection.assets(*STAGES),  # includes the stages' asset checks; partitioned like them
    executor_def=in_process_executor,
    tags={BENCHMARK_TAG: "true", SHAPE_TAG: "full"},
    description="Materialize and check all stages of one scale x profile partition (the full shape).",
)


def shape_job_name(shape: str) -> str:
    return f"{shape}_pipeline"


def build_shape_job(shape: Shape):
    """One named job per pipeline shape; the shape travels as a run tag that the assets and hooks read.
    Launch it on a partition from the UI (Jobs -> <shape>_pipeline -> Materialize) or with
    `kura-perf run --shape <shape>`; extra tags (custom step, batch size) can be added in the launchpad."""
    selected = [stage for stage in STAGES if stage in shape.stages]
    return define_asset_job(
        shape_job_name(shape.name),
        selection=AssetSelection.assets(*selected),
        executor_def=in_process_executor,
        tags={BENCHMARK_TAG: "true", SHAPE_TAG: shape.name},
        description=f"Pipeline shape '{shape.name}': {shape.description}",
    )


shape_jobs = [build_shape_job(shape) for shape in SHAPES.values()]

report_job = define_asset_job(
    "report_job",
    selection=AssetSelection.assets("performance_report"),
    executor_def=in_process_executor,
    description="Rebuild the performance report from the metrics store.",
)
