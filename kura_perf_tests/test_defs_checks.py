"""The asset checks through Dagster: the session's pca|100 partition, the A/A experiment, a slowdown
against a synthetic history, a blocking sanity failure, and the schedule and sensors evaluated directly."""

from __future__ import annotations

import json
import threading
from datetime import datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, HTTPServer

import numpy as np
import pandas as pd
import pytest
from dagster import (
    AssetKey,
    DagsterEventType,
    DagsterInstance,
    build_schedule_context,
    build_sensor_context,
)

from kura_perf.backends.reference import ReferenceBackend
from kura_perf.defs.launch import run_partition
from kura_perf.defs.resources import KuraPerfResource
from kura_perf.files.outputs import StageData
from kura_perf.settings.paths import Paths
from kura_perf.settings.run import RunSettings
from kura_perf.stages.base import STAGES, StageResult
from kura_perf.store import query

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("pca_100")]

CHEAP = ["conversations", "summaries"]


def check_evaluations(instance, run_id: str) -> list:
    """The run's asset check evaluations, as Dagster's event log has them."""
    events = instance.all_logs(run_id, of_type=DagsterEventType.ASSET_CHECK_EVALUATION)
    return [e.dagster_event.event_specific_data for e in events]


def materialized(instance, run_id: str) -> set[str]:
    events = instance.all_logs(run_id, of_type=DagsterEventType.ASSET_MATERIALIZATION)
    return {e.dagster_event.asset_key.path[-1] for e in events}


def stored_checks(paths: Paths, run_id: str) -> pd.DataFrame:
    return query(paths.metrics, "SELECT * FROM check_results WHERE run_id = ?", [run_id])


@pytest.fixture(scope="module")
def instance():
    with DagsterInstance.ephemeral() as inst:
        yield inst


# -- a full partition --------------------------------------------------------------------------

@pytest.fixture
def full_run(pca_100):
    """The session's six-stage pca|100 run (conftest.py), shared with test_defs_pipeline and test_kura_backend."""
    return pca_100.paths, pca_100.outcome


def test_every_stage_has_its_checks_in_the_event_log(full_run, pca_100):
    paths, outcome = full_run
    instance = pca_100.instance
    assert outcome.success, outcome.failure
    evaluations = check_evaluations(instance, outcome.run_id)
    seen = {(e.asset_key.path[-1], e.check_name) for e in evaluations}
    expected = {(s, c) for s in STAGES for c in ("regression", "budgets", "sanity")} | {("clusters", "quality"), ("meta_clusters", "quality")}
    assert seen == expected
    assert {e.partition for e in evaluations} == {"pca|100"}  # partitioned checks
    by_key = {(e.asset_key.path[-1], e.check_name): e for e in evaluations}
    assert all(by_key[(s, "sanity")].passed for s in STAGES)
    assert all(by_key[(s, "regression")].passed for s in STAGES)  # first run: no baseline
    meta = by_key[("embeddings", "regression")].metadata
    assert {"regression_stage_work_s", "regression_peak_rss_mb", "details"} <= set(meta)
    assert "no baseline" in by_key[("embeddings", "regression")].description
    budget_meta = by_key[("embeddings", "budgets")].metadata
    memory = _details(budget_meta)["budget_memory"]
    assert round(memory["baseline"]) == round(4 * 2**30 / 10**6) and memory["unit"] == "MB"  # the 4 GB (GiB) tier up to 1K
    assert " MB vs 4,295 MB" in budget_meta["budget_memory"].value
    # Text and tables only: Dagster would plot a bare number over every evaluation, without units.
    for evaluation in evaluations:
        for key, value in evaluation.metadata.items():
            assert type(value).__name__ in ("TextMetadataValue", "TableMetadataValue"), (evaluation.check_name, key)


def _details(metadata) -> dict:
    """The details table of a check's metadata, by check name."""
    return {row.data["check"]: row.data for row in metadata["details"].records}


def test_every_evaluation_is_in_the_store(full_run):
    paths, outcome = full_run
    rows = stored_checks(paths, outcome.run_id)
    records = {r["stage"]: r["record_id"] for r in outcome.records}
    for stage in STAGES:
        names = set(rows.loc[rows["stage"] == stage, "check_name"])
        assert {"regression_stage_work_s", "regression_peak_rss_mb", "budget_memory", "budget_storage", "sanity"} <= names
        assert set(rows.loc[rows["stage"] == stage, "stage_record_id"]) == {records[stage]}
    assert {"budget_clusters", "quality_silhouette"} <= set(rows.loc[rows["stage"] == "clusters", "check_name"])
    storage = rows[(rows["stage"] == "projections") & (rows["check_name"] == "budget_storage")].iloc[0]
    assert 0 < storage["value"] < 15  # KB per conversation over all stages: the proposal's budget holds
    assert rows["profile"].eq("pca").all() and rows["scale"].eq("100").all()


def test_a_check_rerun_on_its_own_uses_the_latest_record(full_run, pca_100):
    """Running only a check (the UI's 'Execute check') evaluates the partition's latest record."""
    from dagster import AssetCheckKey

    from kura_perf.definitions import defs
    from kura_perf.defs.partitions import partition_key

    paths, outcome = full_run
    instance = pca_100.instance
    job = defs.resolve_job_def("benchmark_job").get_subset(
        asset_selection=set(), asset_check_selection={AssetCheckKey(AssetKey("summaries"), "sanity")})
    result = job.execute_in_process(partition_key=partition_key("100", "pca"), instance=instance,
                                    resources={**defs.resources, "kura_perf": KuraPerfResource(home=str(paths.root))})
    assert result.success
    evaluations = check_evaluations(instance, result.run_id)
    assert [(e.check_name, e.passed) for e in evaluations] == [("sanity", True)]
    assert materialized(instance, result.run_id) == set()
    rows = stored_checks(paths, outcome.run_id)  # stored against the record's run
    assert (rows["check_name"] == "sanity").sum() == len(STAGES) + 1


# -- A/A and the injected slowdown ---------------------------------------------------------------

@pytest.fixture(scope="module")
def warm(tmp_path_factory, instance):
    """One throwaway run first, so imports and caches are warm for every measured run alike."""
    run_partition("100", "offline", stages=CHEAP, paths=Paths(tmp_path_factory.mktemp("warm") / "data"),
                  instance=instance)


AA_RUNS = 4


def test_aa_repeated_runs_raise_no_regression(tmp_path, instance, warm):
    """Same code, same partition, AA_RUNS times: every regression check is evaluated against the growing
    history and passes, in Dagster and in the store. End to end on real records, so the figures are real
    wall times of ~50 ms stages on a box running the suite on every core: that once measured x2.25 between
    two runs (0.050 s, then 0.112 s) and failed here. The detector's false-alarm rate on jittery series is
    test_checks.py's (synthetic, deterministic); this test keeps the path (history lookup, samples, rows,
    the regressions view), with a threshold (x51) no scheduling jitter reaches."""
    profiles = tmp_path / "aa.toml"
    profiles.write_text("[offline-aa]\ndescription = \"offline, regression threshold x51\"\nregression_threshold = 50.0\n")
    paths = Paths(tmp_path / "data")
    settings = RunSettings.from_env(paths=paths, profiles_file=str(profiles))
    outcomes = [run_partition("100", "offline-aa", stages=CHEAP, instance=instance, run_settings=settings)
                for _ in range(AA_RUNS)]
    assert all(o.success for o in outcomes), [o.failure for o in outcomes]
    regression = [e for o in outcomes for e in check_evaluations(instance, o.run_id) if e.check_name == "regression"]
    assert len(regression) == AA_RUNS * len(CHEAP)
    assert all(e.passed for e in regression), [e.description for e in regression if not e.passed]
    rows = query(paths.metrics, "SELECT * FROM check_results WHERE check_name LIKE 'regression%'")
    assert len(rows) == AA_RUNS * len(CHEAP) * 2 and rows["passed"].all()
    assert rows["samples"].max() == AA_RUNS - 1  # the last run was compared with all earlier ones
    assert len(query(paths.metrics, "SELECT * FROM regressions")) == 0


class Webhook(BaseHTTPRequestHandler):
    received: list = []

    def do_POST(self):  # noqa: N802 - http.server's naming
        Webhook.received.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args):
        pass


@pytest.fixture
def webhook(monkeypatch):
    server = HTTPServer(("127.0.0.1", 0), Webhook)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    monkeypatch.setenv("KURA_PERF_ALERT_WEBHOOK", f"http://127.0.0.1:{server.server_port}/alerts/token123")
    Webhook.received.clear()
    yield Webhook.received
    server.shutdown()
    server.server_close()


def synthetic_history(paths: Paths, settings: RunSettings, stage: str, wall_s: list[float], peak_rss_mb: float) -> None:
    """Earlier successful runs of offline|100's `stage` on this host, written straight into the store:
    the history the regression check compares with, without timing real runs (the detector itself is
    tested on synthetic series in test_checks.py)."""
    from kura_perf.meter.host import host_info
    from kura_perf.store import write_record
    from kura_perf.store.record import StageRecord

    profile_hash, host = settings.profile("offline").content_hash(), host_info()["host_fingerprint"]
    now = datetime.now(timezone.utc)
    for i, wall in enumerate(wall_s):
        started = now - timedelta(hours=len(wall_s) - i)
        record = StageRecord(record_id=f"history-{stage}-{i}", run_id=f"history-{i}", stage=stage, profile="offline",
                             profile_hash=profile_hash, scale="100", scale_n=100, status="success",
                             started_at=started, finished_at=started + timedelta(seconds=wall), wall_s=wall,
                             peak_rss_mb=peak_rss_mb, rss_start_mb=peak_rss_mb / 2, metered=True,
                             host_fingerprint=host, code_version="history")
        write_record(paths.metrics, "stage_runs", record.as_row())


def test_a_slowdown_is_caught_in_dagster_and_alerted_once(tmp_path, instance, webhook):
    """A real run whose summaries stage is far slower than its stored history: the regression check is
    red (ERROR, with its figures) but does not block the run, the store lists the regression, and the
    alerts sensor raises it once (log, store, webhook without the token). The history is synthetic and
    the slowdown a fixed sleep, so the verdict does not depend on the machine's load."""
    from kura_perf.defs.sensors import regression_alerts

    paths = Paths(tmp_path / "data")
    # The summaries stage sleeps 0.25 s on top of its work (a settings hook, kura_perf_tests/slow_stages.py),
    # against three earlier runs of ~10 ms: far over x1.10 and over the noise band's 50 ms floor.
    slower = RunSettings.from_env(paths=paths, backend_wrapper="kura_perf_tests.slow_stages:summaries_plus_quarter_second")
    synthetic_history(paths, slower, "summaries", wall_s=[0.010, 0.011, 0.009], peak_rss_mb=1e6)
    slow = run_partition("100", "offline", stages=CHEAP, instance=instance, run_settings=slower)
    assert slow.success  # a regression is red, but does not block the run

    evaluations = {(e.asset_key.path[-1], e.check_name): e for e in check_evaluations(instance, slow.run_id)}
    caught = evaluations[("summaries", "regression")]
    assert not caught.passed and caught.severity.value == "ERROR"
    wall = _details(caught.metadata)["regression_stage_work_s"]
    assert wall["ratio"] > 1.2 and wall["samples"] == 3 and wall["unit"] == "s" and wall["noise_band"]
    assert "FAILED" in caught.metadata["regression_stage_work_s"].value and " s vs " in caught.metadata["regression_stage_work_s"].value
    assert evaluations[("conversations", "regression")].passed  # no history: no baseline yet
    failed = query(paths.metrics, "SELECT * FROM regressions")
    assert list(failed["check_name"]) == ["regression_stage_work_s"] and failed["run_id"][0] == slow.run_id

    context = build_sensor_context(instance=instance, resources={"kura_perf": KuraPerfResource(home=str(paths.root))})
    result = regression_alerts(context)
    assert "raised 1 regression alert" in result.skip_message
    alerts = query(paths.metrics, "SELECT * FROM alerts")
    assert len(alerts) == 1 and alerts["check_record_id"][0] == failed["record_id"][0]
    assert "token123" not in alerts["delivered_to"][0] and "webhook http://127.0.0.1" in alerts["delivered_to"][0]
    assert webhook and webhook[0]["stage"] == "summaries" and webhook[0]["ratio"] > 1.2
    again = regression_alerts(build_sensor_context(instance=instance, cursor=context.cursor,
                                                   resources={"kura_perf": KuraPerfResource(home=str(paths.root))}))
    assert "no new" in again.skip_message and len(query(paths.metrics, "SELECT * FROM alerts")) == 1


# -- sanity blocks downstream ---------------------------------------------------------------------

def test_nan_embeddings_fail_sanity_and_clusters_never_run(tmp_path, instance, monkeypatch):
    """A backend that stores NaN vectors (the stage 'succeeds'): the blocking sanity check stops the run."""
    def nan_embeddings(self, inputs):
        summaries = inputs.upstream["summaries"].tables["main"]
        vectors = np.full((len(summaries), 384), np.nan, dtype=np.float32)
        ids = pd.DataFrame({"chat_id": summaries["chat_id"]})
        return StageResult(StageData(tables={"ids": ids}, arrays={"main": vectors}), len(summaries), len(summaries))

    monkeypatch.setattr(ReferenceBackend, "_embeddings", nan_embeddings)
    paths = Paths(tmp_path / "data")
    outcome = run_partition("100", "offline", stages=["conversations", "summaries", "embeddings", "clusters"],
                            paths=paths, instance=instance)
    assert not outcome.success
    assert outcome.failure.startswith("embeddings_checks: DagsterAssetCheckFailedError") and "sanity" in outcome.failure
    assert materialized(instance, outcome.run_id) == {"conversations", "summaries", "embeddings"}
    assert {r["stage"] for r in outcome.records} == {"conversations", "summaries", "embeddings"}  # clusters never ran
    sanity = [e for e in check_evaluations(instance, outcome.run_id)
              if e.asset_key == AssetKey("embeddings") and e.check_name == "sanity"][0]
    assert not sanity.passed and sanity.blocking and "NaN" in sanity.description
    planned = instance.all_logs(outcome.run_id, of_type=DagsterEventType.ASSET_MATERIALIZATION_PLANNED)
    started = instance.all_logs(outcome.run_id, of_type=DagsterEventType.STEP_START)
    assert AssetKey("clusters") in {e.dagster_event.asset_key for e in planned}  # it was part of the run ...
    assert "clusters" not in {e.step_key for e in started}  # ... and never started
    stored = stored_checks(paths, outcome.run_id)
    assert not stored[(stored["stage"] == "embeddings") & (stored["check_name"] == "sanity")]["passed"].iloc[0]


# -- the schedule and the job ----------------------------------------------------------------------

def test_nightly_schedule_requests_the_configured_partitions(monkeypatch):
    from datetime import datetime, timezone

    from kura_perf.defs.build import build_definitions

    when = datetime(2026, 3, 4, 2, 0, tzinfo=timezone.utc)
    monkeypatch.delenv("KURA_PERF_NIGHTLY", raising=False)
    nightly_benchmark = build_definitions(RunSettings.from_env()).get_schedule_def("nightly_benchmark")
    requests = list(nightly_benchmark(build_schedule_context(scheduled_execution_time=when)))
    assert [str(r.partition_key) for r in requests] == ["offline|100", "offline|1k", "offline|10k"]
    assert len({r.run_key for r in requests}) == 3 and all("2026-03-04" in r.run_key for r in requests)
    monkeypatch.setenv("KURA_PERF_NIGHTLY", "pca:100, kmeans:5k")  # read where the definitions' settings are built
    nightly_benchmark = build_definitions(RunSettings.from_env()).get_schedule_def("nightly_benchmark")
    requests = list(nightly_benchmark(build_schedule_context(scheduled_execution_time=when)))
    assert [str(r.partition_key) for r in requests] == ["pca|100", "kmeans|5k"]
    assert nightly_benchmark.cron_schedule == "0 2 * * *" and nightly_benchmark.execution_timezone == "UTC"


def test_bad_nightly_setting_is_refused_clearly():
    from kura_perf.defs.partitions import benchmark_partitions
    from kura_perf.defs.schedules import nightly_partitions
    from kura_perf.errors import KuraPerfError

    with pytest.raises(KuraPerfError, match="'offline:2k' is not a partition"):
        nightly_partitions(benchmark_partitions(RunSettings.from_env().profiles()), "offline:2k")


def test_benchmark_job_runs_stages_and_checks_in_process():
    from kura_perf.definitions import defs

    job = defs.resolve_job_def("benchmark_job")
    assert job.executor_def.name == "in_process"
    assert job.partitions_def is not None
    check_keys = {k.name for k in job.asset_layer.asset_graph.asset_check_keys}
    assert check_keys == {"regression", "budgets", "sanity", "quality"}


def test_reaping_dead_runs_is_its_own_sensor_and_the_alerts_sensor_only_alerts(tmp_path):
    """A CLI run whose process is gone stays STARTED until `reap_dead_runs` marks it failed;
    `regression_alerts` leaves it alone."""
    from dagster import DagsterInstance, DagsterRunStatus
    from dagster._core.storage.dagster_run import DagsterRun

    from kura_perf.defs.instance import run_tags, tagged_identity
    from kura_perf.defs.sensors import reap_dead_runs, regression_alerts
    from kura_perf.store import liveness

    me = liveness.process_identity()
    gone = {**me, "pid_since_boot": None, "pid_started": me["pid_started"] - 10_000}  # an earlier process, same pid
    tags = {"kura_perf/source": "cli", **run_tags(gone)}
    assert len(tags) == 2  # one tag for the process, not five (the UI's runs list shows every tag)
    assert tagged_identity(tags) == {key: str(value) for key, value in gone.items() if value is not None}
    resources = {"kura_perf": KuraPerfResource(home=str(tmp_path / "data"))}
    with DagsterInstance.ephemeral() as instance:
        instance.add_run(DagsterRun(job_name="benchmark_job", run_id="deadrun", status=DagsterRunStatus.STARTED,
                                    tags=tags))
        alerts = regression_alerts(build_sensor_context(instance=instance, resources=resources))
        assert "no new" in alerts.skip_message
        assert instance.get_run_by_id("deadrun").status == DagsterRunStatus.STARTED
        reaped = reap_dead_runs(build_sensor_context(instance=instance, resources=resources))
        assert "marked 1 dead run" in reaped.skip_message
        assert instance.get_run_by_id("deadrun").status == DagsterRunStatus.FAILURE
        again = reap_dead_runs(build_sensor_context(instance=instance, resources=resources))
        assert again.skip_message == "no dead runs"


def test_runs_recorded_with_the_five_old_pid_tags_are_still_read():
    """Dagster homes written before the one process tag keep their runs reapable."""
    from kura_perf.defs.instance import tagged_identity

    old = {"kura_perf/pid": "12", "kura_perf/host": "h", "kura_perf/pid_started": "1.5", "kura_perf/boot_id": "b",
           "kura_perf/pid_since_boot": "3.25", "dagster/partition": "offline|100"}
    assert tagged_identity(old) == {"pid": "12", "host": "h", "pid_started": "1.5", "boot_id": "b",
                                    "pid_since_boot": "3.25"}
    assert tagged_identity({"dagster/partition": "offline|100"}) == {}
