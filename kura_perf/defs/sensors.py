"""Three sensors, all RUNNING by default (turn one off in the UI: Automation ->
the sensor -> toggle, or `dagster sensor stop <name> -w workspace.yaml` with the same DAGSTER_HOME;
a stopped sensor stays stopped across restarts):

- regression_alerts: turns new failed regression checks in the store into alerts (log line,
  alerts table, webhook POST when KURA_PERF_ALERT_WEBHOOK is set). It reads the store, not Dagster's
  event log, so regressions found by CLI runs (`kura-perf run`) alert too.
- reap_dead_runs: cleans up after dead processes (defs/instance.py): their stages become `died`
  records, their runs are marked failed.
- refresh_after_benchmark: after a successful benchmark run, refreshes the DuckDB views and requests
  a run of the performance_report asset.
"""

from datetime import datetime

from dagster import (
    DagsterRunStatus,
    DefaultSensorStatus,
    RunRequest,
    RunStatusSensorContext,
    SensorEvaluationContext,
    SkipReason,
    run_status_sensor,
    sensor,
)

from kura_perf.checks.alerts import raise_alert, unalerted_regressions
from kura_perf.defs.instance import reap_and_fail
from kura_perf.defs.jobs import BENCHMARK_JOB, BENCHMARK_TAG, report_job
from kura_perf.defs.resources import KuraPerfResource
from kura_perf.store import refresh_database


@sensor(name="regression_alerts", minimum_interval_seconds=60, default_status=DefaultSensorStatus.RUNNING,
        description="Alert on failed regression checks in the metrics store (log, alerts table, webhook).")
def regression_alerts(context: SensorEvaluationContext, kura_perf: KuraPerfResource):
    settings = kura_perf.settings()
    paths = settings.paths
    since = datetime.fromisoformat(context.cursor) if context.cursor else None
    rows = unalerted_regressions(paths, since)
    for row in rows:
        raise_alert(paths, row, settings.alert_webhook, logger=context.log)
    if rows:
        context.update_cursor(max(r["checked_at"] for r in rows).isoformat())
        return SkipReason(f"raised {len(rows)} regression alert(s)")
    return SkipReason("no new failed regression checks")


@sensor(name="reap_dead_runs", minimum_interval_seconds=60, default_status=DefaultSensorStatus.RUNNING,
        description="Clean up after runs whose process died: their stages become `died` records, their Dagster "
                    "runs are marked failed.")
def reap_dead_runs(context: SensorEvaluationContext, kura_perf: KuraPerfResource):
    marked = reap_and_fail(kura_perf.paths().root, instance=context.instance)
    for run_id in marked:
        context.log.warning(f"run {run_id}: its process died; stage recorded as died, run marked failed")
    return SkipReason(f"marked {len(marked)} dead run(s) failed" if marked else "no dead runs")


def is_benchmark_run(run) -> bool:
    """A run of the benchmark job, or any run of one of our partitions (UI materializations, `kura-perf run`)."""
    tags = run.tags
    return (run.job_name == BENCHMARK_JOB or tags.get(BENCHMARK_TAG) == "true"
            or ("dagster/partition/profile" in tags and "dagster/partition/scale" in tags))


@run_status_sensor(run_status=DagsterRunStatus.SUCCESS, name="refresh_after_benchmark", minimum_interval_seconds=15,
                   default_status=DefaultSensorStatus.RUNNING, monitor_all_code_locations=True,
                   request_job=report_job,
                   description="After a successful benchmark run: refresh the DuckDB views, then request a run "
                               "of the performance_report asset.")
def refresh_after_benchmark(context: RunStatusSensorContext, kura_perf: KuraPerfResource):
    run = context.dagster_run
    if not is_benchmark_run(run):
        return SkipReason(f"run {run.run_id} is not a benchmark run")
    paths = kura_perf.paths()
    views = "views refreshed" if refresh_database(paths.metrics, paths.database) else "views NOT refreshed (db busy)"
    context.log.info(f"after run {run.run_id}: {views}; requesting the performance report")
    # The report is its own (unpartitioned) asset run, so it is not a benchmark run: no loop.
    return RunRequest(run_key=f"report-after-{run.run_id}")
