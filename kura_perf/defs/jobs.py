"""The benchmark job: every stage asset of one partition, with its checks, in one process.

In-process, so stages run one after another with nothing else of the run competing for the CPU:
a multiprocess executor would start check steps and stage steps side by side and disturb timings.
"""

from dagster import AssetSelection, define_asset_job, in_process_executor

from kura_perf.defs.assets import stage_assets

BENCHMARK_TAG = "kura_perf/benchmark"

benchmark_job = define_asset_job(
    "benchmark_job",
    selection=AssetSelection.assets(*stage_assets),  # includes the stages' asset checks; partitioned like them
    executor_def=in_process_executor,
    tags={BENCHMARK_TAG: "true"},
    description="Materialize and check all stages of one scale x profile partition.",
)

report_job = define_asset_job(
    "report_job",
    selection=AssetSelection.assets("performance_report"),
    executor_def=in_process_executor,
    description="Rebuild the performance report from the metrics store.",
)
