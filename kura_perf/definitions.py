"""The one Definitions object (`dagster dev -w workspace.yaml` loads it)."""

from dagster import Definitions, in_process_executor

from kura_perf.defs.assets import stage_assets
from kura_perf.defs.checks import stage_checks
from kura_perf.defs.jobs import benchmark_job, report_job, shape_jobs
from kura_perf.defs.report import performance_report
from kura_perf.defs.resources import KuraPerfResource
from kura_perf.defs.simulator import ApiSimulatorResource
from kura_perf.defs.stress import stress_assets
from kura_perf.defs.sweep import api_concurrency_sweep
from kura_perf.defs.usability import usability_assets
from kura_perf.defs.schedules import nightly_benchmark
from kura_perf.defs.sensors import refresh_after_benchmark, regression_alerts

try:  # the cluster jobs need the `cluster` extra (dagster-celery); without it, everything else still loads
    from kura_perf.defs.cluster import CLUSTER_JOBS
except ImportError:  # pragma: no cover - depends on the installed extras
    CLUSTER_JOBS = {}

defs = Definitions(
    assets=[*stage_assets, api_concurrency_sweep, performance_report, *usability_assets, *stress_assets],
    asset_checks=stage_checks,
    jobs=[benchmark_job, report_job, *shape_jobs, *CLUSTER_JOBS.values()],
    schedules=[nightly_benchmark],
    sensors=[regression_alerts, refresh_after_benchmark],
    resources={"kura_perf": KuraPerfResource(), "api_simulator": ApiSimulatorResource()},
    # Also for UI materializations (the implicit asset job): stages one after another, undisturbed.
    executor=in_process_executor,
)
