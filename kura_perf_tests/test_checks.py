"""The checks' core logic without Dagster: synthetic records and outputs in a temporary store."""

from __future__ import annotations

import json
import threading
from datetime import datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, HTTPServer

import numpy as np
import pandas as pd
import pytest

from kura_perf.checks import baselines
from kura_perf.checks.alerts import raise_alert, unalerted_regressions
from kura_perf.checks.budgets import (
    EXPECTED_CLUSTERS,
    check_cluster_count,
    check_memory,
    check_storage,
    memory_budget_mb,
)
from kura_perf.checks.evaluate import evaluate_stage
from kura_perf.checks.outcome import ERROR, WARN
from kura_perf.checks.quality import check_quality
from kura_perf.checks.records import find_stage_record, metric_history
from kura_perf.checks.regression import check_regression, compare, margin_for, prediction_bound, z_score
from kura_perf.checks.sanity import check_sanity, hierarchy_problems
from kura_perf.files.outputs import StageData, write_stage
from kura_perf.profiles import get_profile
from kura_perf.settings.paths import Paths
from kura_perf.store import query, write_record
from kura_perf.store.record import StageRecord

T0 = datetime(2026, 1, 1, tzinfo=timezone.utc)
HOST = "host-a"


@pytest.fixture
def paths(tmp_path) -> Paths:
    return Paths(tmp_path / "data")


def record(i: int, wall_s: float = 1.0, rss: float = 500.0, stage: str = "summaries", run_id: str | None = None,
           host: str = HOST, profile_hash: str = "p1", status: str = "success", **extra) -> StageRecord:
    return StageRecord(record_id=f"rec{i}-{stage}", run_id=run_id or f"run{i}", stage=stage, profile="offline",
                       profile_hash=profile_hash, scale="100", scale_n=100, status=status,
                       started_at=T0 + timedelta(hours=i), finished_at=T0 + timedelta(hours=i, seconds=wall_s),
                       wall_s=wall_s, peak_rss_mb=rss, rss_start_mb=rss - 50, metered=True,
                       host_fingerprint=host, code_version="abc", **extra)


def store(paths: Paths, *records: StageRecord) -> None:
    for rec in records:
        write_record(paths.metrics, "stage_runs", rec.as_row())


# -- regression: the pure comparison ---------------------------------------------------------------

def test_no_history_passes_with_no_baseline():
    result = compare(5.0, [], 0.1)
    assert result.passed and result.baseline is None and result.samples == 0
    assert "no baseline" in result.message


def test_small_change_passes_even_beyond_the_band():
    result = compare(1.08, [1.0, 1.0, 1.0], 0.10)
    assert result.passed and result.ratio == pytest.approx(1.08)
    assert "within x1.10" in result.message


def test_large_change_inside_the_noise_band_passes():
    history = [1.0, 1.6, 0.9, 1.5, 1.1]  # a noisy machine: 1.4 is 27% over the median but inside [0.9, 1.6]
    result = compare(1.4, history, 0.10)
    assert result.passed and result.ratio > 1.1
    assert result.noise_high == pytest.approx(1.6 * 1.05)
    assert "inside the noise band" in result.message


def test_large_change_beyond_the_noise_fails_with_all_figures():
    history = [1.00, 1.02, 0.98, 1.01, 0.99, 1.03]
    result = compare(1.30, history, 0.10)
    assert not result.passed
    assert result.baseline == pytest.approx(1.005)
    assert result.ratio == pytest.approx(1.30 / 1.005)
    assert result.noise_low < 0.98 and result.noise_high == pytest.approx(1.03 * 1.05)
    assert result.samples == 6 and result.z_score > 3
    assert "REGRESSION" in result.message


def test_few_samples_use_band_and_threshold_only():
    result = compare(1.30, [1.0, 1.02], 0.10)
    assert not result.passed and result.z_score is None


def test_outlier_test_can_clear_a_value_just_past_the_band():
    # Past max*1.05 and 13% over the median, but the history is so spread that it is no outlier.
    history = [1.0, 1.3, 0.8, 1.35, 0.7, 1.0]
    result = compare(1.45, history, 0.10)
    assert result.passed and result.z_score < 3
    assert "within the history's prediction bound" in result.message


def test_absolute_floor_ignores_jitter_on_tiny_stages():
    result = compare(0.030, [0.010, 0.011, 0.010], 0.10, metric="wall_s")  # x3, but 20 ms
    assert result.passed
    assert not compare(0.30, [0.10, 0.11, 0.10], 0.10, metric="wall_s").passed


def test_faster_is_never_a_regression():
    assert compare(0.5, [1.0] * 8, 0.10).passed


def test_threshold_comes_from_the_profile_setting():
    history = [1.0, 1.01, 0.99]
    assert not compare(1.25, history, 0.10).passed
    assert compare(1.25, history, 0.30).passed


def test_constant_history_has_a_zero_width_bound():
    assert z_score(2.0, [1.0] * 5) == float("inf") and z_score(1.0, [1.0] * 5) == 0.0
    assert prediction_bound([1.0] * 5) == 1.0
    assert not compare(1.2, [1.0] * 5, 0.10).passed


def test_short_history_widens_the_band():
    assert margin_for(1) == pytest.approx(0.25) and margin_for(5) == margin_for(10) == pytest.approx(0.05)
    assert compare(1.15, [1.0], 0.10).passed  # x1.15 over one earlier run: not enough to tell
    assert not compare(1.30, [1.0], 0.10).passed


def test_a_noisy_aa_series_raises_no_alarm():
    """Same code, 100 series of 30 runs with 5% gaussian jitter, each run checked against the 10
    before it: false alarms stay rare (simulated rate ~0.5% per check)."""
    checks = failures = 0
    for seed in range(100):
        values = list(1.0 + 0.05 * np.random.default_rng(seed).standard_normal(30))
        for i in range(1, 30):
            checks += 1
            failures += not compare(values[i], values[max(0, i - 10):i][::-1], 0.10).passed
    assert failures / checks < 0.01


def test_a_thirty_percent_slowdown_is_caught_over_jitter():
    rng = np.random.default_rng(2)
    history = list(1.0 + 0.03 * rng.standard_normal(10))
    assert not compare(1.3 * (1.0 + 0.03 * rng.standard_normal()), history, 0.10).passed


# -- regression against the store: history selection and pins --------------------------------------

def test_history_is_same_stage_scale_profile_hash_host_and_earlier(paths):
    store(paths, *(record(i, wall_s=1.0 + i / 100) for i in range(12)))
    store(paths, record(20, wall_s=9.0, host="other-host"), record(21, wall_s=9.0, profile_hash="p2"),
          record(22, wall_s=9.0, stage="embeddings"), record(23, wall_s=9.0, status="failed"))
    current = record(30, wall_s=1.05)
    history = metric_history(paths, current, "wall_s")
    assert len(history) == 10 and max(history) < 2  # newest 10 of the 12 comparable runs
    assert history[0] == pytest.approx(1.11)  # newest first
    earlier = record(5, wall_s=1.05)  # a re-check of an old record sees only what came before it
    assert len(metric_history(paths, earlier, "wall_s")) == 5


def test_check_regression_on_stored_history(paths):
    store(paths, *(record(i, wall_s=1.0 + 0.01 * (i % 3), rss=500 + i % 2) for i in range(6)))
    slow = check_regression(paths, record(10, wall_s=1.4), "wall_s", 0.10)
    assert not slow.passed and slow.samples == 6
    same = check_regression(paths, record(11, wall_s=1.01), "wall_s", 0.10)
    assert same.passed
    memory = check_regression(paths, record(12, rss=800.0), "peak_rss_mb", 0.10)
    assert not memory.passed and memory.outcome().name == "regression_peak_rss_mb"
    # recorded in MiB, compared and shown in decimal MB like the budgets: 800 MiB = 838.9 MB
    assert memory.value == pytest.approx(800 * 2**20 / 1e6) and "838.861 MB" in memory.message
    assert memory.outcome().severity == ERROR


def test_time_regression_compares_work_time_so_a_cold_jit_cache_is_no_false_alarm(paths):
    """A clusters run that paid 20 s of numba compile on a cold cache is 21 s of wall but 1 s of work:
    no regression; 1.4 s of work against 1.0 is one. Old records (no split) count their wall time."""
    store(paths, *(record(i, stage="clusters", wall_s=1.0 + 0.01 * (i % 3)) for i in range(3)),
          *(record(i, stage="clusters", wall_s=1.0 + 0.01 * (i % 3), stage_work_s=1.0 + 0.01 * (i % 3),
                   jit_compile_s=0.0, startup_s=0.0) for i in range(3, 6)))
    cold = record(10, stage="clusters", wall_s=21.0, jit_compile_s=19.5, startup_s=0.5, stage_work_s=1.0)
    result = check_regression(paths, cold, "stage_work_s", 0.10)
    assert result.passed and result.samples == 6 and result.value == 1.0
    assert result.outcome().name == "regression_stage_work_s"
    assert not check_regression(paths, cold, "wall_s", 0.10).passed  # what the old check said
    slower = record(11, stage="clusters", wall_s=1.4, jit_compile_s=0.0, startup_s=0.0, stage_work_s=1.4)
    assert not check_regression(paths, slower, "stage_work_s", 0.10).passed
    unsplit = record(12, stage="clusters", wall_s=1.4)  # a record from before the split: its wall time
    assert check_regression(paths, unsplit, "stage_work_s", 0.10).value == 1.4


def test_pinned_baseline_catches_a_creep_the_rolling_history_absorbed(paths):
    # run0 was fast; ten later runs crept up to 1.5 s, so the rolling history finds nothing wrong.
    store(paths, record(0, wall_s=1.0), *(record(i, wall_s=1.5 + 0.01 * (i % 3)) for i in range(1, 11)))
    assert check_regression(paths, record(20, wall_s=1.5), "wall_s").passed
    baselines.pin(paths, "run0")
    pinned = check_regression(paths, record(20, wall_s=1.5), "wall_s")
    assert not pinned.passed and pinned.baseline == 1.0 and pinned.pinned_run == "run0"
    assert pinned.noise_high < 1.2  # the history's relative spread, around the pinned value
    assert baselines.active_pin(paths, "offline", "100", HOST) == "run0"
    baselines.clear(paths, "offline", "100", HOST)
    assert baselines.active_pin(paths, "offline", "100", HOST) is None
    assert check_regression(paths, record(20, wall_s=1.5), "wall_s").passed


def test_latest_pin_action_wins_per_partition_and_host(paths):
    store(paths, record(0), record(1), record(2, host="other-host"))
    baselines.pin(paths, "run0")
    baselines.pin(paths, "run1")
    baselines.pin(paths, "run2")
    assert baselines.active_pin(paths, "offline", "100", HOST) == "run1"
    assert baselines.active_pin(paths, "offline", "100", "other-host") == "run2"
    pins = baselines.active_pins(paths)
    assert sorted(pins["run_id"]) == ["run1", "run2"]
    shown = baselines.show(paths, profile="offline", scale="100")
    assert set(shown["baseline"]) == {"pinned run1", "pinned run2"}


def test_pin_refuses_an_unknown_run(paths):
    from kura_perf.errors import KuraPerfError

    with pytest.raises(KuraPerfError, match="no successful stage records"):
        baselines.pin(paths, "nope")


# -- record lookup -----------------------------------------------------------------------------

def test_record_is_found_stored_then_latest(paths):
    store(paths, record(2, run_id="r-stored"))
    found = find_stage_record(paths, "r-stored", "summaries")
    assert found.record_id == "rec2-summaries" and isinstance(found.wall_s, float)
    assert find_stage_record(paths, "r-other", "summaries") is None
    assert find_stage_record(paths, "r-other", "summaries", "offline", "100").run_id == "r-stored"


# -- budgets ------------------------------------------------------------------------------------

def test_memory_budget_per_scale_follows_the_hardware_table():
    assert memory_budget_mb(100) == memory_budget_mb(1_000) == 4 * 2**30 / 10**6  # 4 GiB in decimal MB
    assert memory_budget_mb(5_000) == memory_budget_mb(10_000) == 16 * 2**30 / 10**6
    assert memory_budget_mb(50_000) == memory_budget_mb(100_000) == 64 * 2**30 / 10**6
    assert check_memory(record(1, rss=3000)).passed
    over = check_memory(record(1, rss=5000), blocking=True)
    assert not over.passed and over.severity == ERROR and "OVER" in over.message
    assert check_memory(record(1, rss=5000)).severity == WARN


def test_storage_budget_counts_this_and_earlier_stages(tmp_path):
    folder = tmp_path / "part"
    write_stage(folder, "conversations", StageData(arrays={"main": np.zeros(100 * 1024 // 8)}))  # ~1 KB/conv
    write_stage(folder, "summaries", StageData(arrays={"main": np.zeros(100 * 20 * 1024 // 8)}))  # ~20 KB/conv
    first = check_storage(record(1, stage="conversations"), folder)
    assert first.passed and 1.0 < first.value < 1.1
    total = check_storage(record(1, stage="summaries"), folder)
    assert not total.passed and total.value > 20 and total.baseline == 15.0


def test_cluster_count_ranges_per_scale():
    assert EXPECTED_CLUSTERS["1k"] == (10, 50) and EXPECTED_CLUSTERS["50k"] == (500, 2000)
    ok = check_cluster_count(StageRecord(scale="1k", n_clusters=30))
    assert ok.passed and (ok.noise_low, ok.noise_high) == (10, 50)
    # Without ground truth §1.2's range informs and never fails (it failed 48 clusters on a 48-topic corpus).
    outside = check_cluster_count(StageRecord(scale="10k", n_clusters=80))
    assert outside.passed and "outside" in outside.message and "100-500" in outside.message
    assert check_cluster_count(StageRecord(scale="100", n_clusters=3)).passed


# -- quality ------------------------------------------------------------------------------------

def test_quality_floors_only_when_the_profile_sets_them():
    profile = get_profile("offline")
    rec = StageRecord(silhouette=0.05, ari=0.2)
    assert all(o.passed for o in check_quality(rec, profile))
    strict = profile.model_copy(update={"min_silhouette": 0.1, "min_ari": 0.1})
    by_name = {o.name: o for o in check_quality(rec, strict)}
    assert not by_name["quality_silhouette"].passed and by_name["quality_ari"].passed
    missing = check_quality(StageRecord(silhouette=None), strict)[0]
    assert not missing.passed and "not available" in missing.message


def test_quality_floors_say_which_level_they_hold():
    strict = get_profile("offline").model_copy(update={"min_ari": 0.5})
    levels = [{"level": 0, "n_clusters": 100, "ari": 0.3, "nmi": 0.8, "homogeneity": 0.95, "true_topics": 48,
               "is_topic_level": False},
              {"level": 1, "n_clusters": 50, "ari": 0.6, "nmi": 0.85, "homogeneity": 0.8, "true_topics": 48,
               "is_topic_level": True}]
    meta = {o.name: o for o in check_quality(StageRecord(stage="meta_clusters"), strict, levels=levels)}
    assert meta["quality_ari"].passed and meta["quality_ari"].value == 0.6
    assert "at level 1 (50 meta clusters, nearest the 48 true topics)" in meta["quality_ari"].message
    base = {o.name: o for o in check_quality(StageRecord(stage="clusters", silhouette=0.2, ari=0.3), strict,
                                             levels=levels[:1])}
    assert base["quality_ari"].passed and "holds at the topic level" in base["quality_ari"].message
    assert base["quality_homogeneity"].value == 0.95 and "level 0" in base["quality_homogeneity"].message
    failing = check_quality(StageRecord(stage="meta_clusters"), strict, levels=[{**levels[1], "ari": 0.4}])
    assert not failing[0].passed and "0.400 at level 1" in failing[0].message
    assert not check_quality(StageRecord(stage="meta_clusters"), strict, levels=[])[0].passed


# -- sanity -------------------------------------------------------------------------------------

def good_partition(folder, n: int = 20) -> None:
    ids = [f"c{i}" for i in range(n)]
    write_stage(folder, "conversations", StageData(tables={"main": pd.DataFrame({"chat_id": ids, "text": "x"})}))
    write_stage(folder, "summaries", StageData(tables={"main": pd.DataFrame(
        {"chat_id": ids, "summary": "s", "embed_text": [f"t{i}" for i in range(n)]})}))
    write_stage(folder, "embeddings", StageData(tables={"ids": pd.DataFrame({"chat_id": ids})},
                                                arrays={"main": np.ones((n, 384), dtype=np.float32)}))
    labels = [i % 3 if i < n - 2 else -1 for i in range(n)]
    sizes = pd.Series(labels).value_counts()
    write_stage(folder, "clusters", StageData(tables={
        "main": pd.DataFrame({"cluster_id": [0, 1, 2, -1], "size": [int(sizes[c]) for c in (0, 1, 2, -1)]}),
        "assignments": pd.DataFrame({"chat_id": ids, "cluster_id": labels})}))
    write_stage(folder, "meta_clusters", StageData(tables={"main": pd.DataFrame({
        "cluster_id": ["c0", "c1", "c2", "m1-0"], "parent_id": ["m1-0", "m1-0", "m1-0", None],
        "is_leaf": [True, True, True, False], "base_cluster_id": pd.array([0, 1, 2, None], dtype="Int64")})}))
    write_stage(folder, "projections", StageData(tables={"main": pd.DataFrame(
        {"chat_id": ids, "x": np.zeros(n, dtype=np.float32), "y": np.ones(n, dtype=np.float32)})}))


STAGE_ORDER = ("conversations", "summaries", "embeddings", "clusters", "meta_clusters", "projections")


def test_sanity_passes_on_a_consistent_partition(tmp_path):
    good_partition(tmp_path)
    profile = get_profile("offline")
    for stage in STAGE_ORDER:
        outcome = check_sanity(tmp_path, stage, profile, 20)
        assert outcome.passed, outcome.message
        assert outcome.severity == ERROR


@pytest.mark.parametrize("stage, corrupt, expected", [
    ("conversations", lambda f: None, "partition asks for 25"),
    ("summaries", lambda f: write_stage(f, "summaries", StageData(tables={"main": pd.DataFrame(
        {"chat_id": [f"c{i}" for i in range(19)], "summary": "s", "embed_text": "t"})})), "1 conversation(s) missing"),
    ("embeddings", lambda f: write_stage(f, "embeddings", StageData(
        tables={"ids": pd.DataFrame({"chat_id": [f"c{i}" for i in range(20)]})},
        arrays={"main": np.full((20, 384), np.nan, dtype=np.float32)})), "20 row(s) with NaN"),
    ("embeddings", lambda f: write_stage(f, "embeddings", StageData(
        tables={"ids": pd.DataFrame({"chat_id": [f"c{i}" for i in range(20)]})},
        arrays={"main": np.ones((20, 100), dtype=np.float32)})), "dimension 100, the model gives 384"),
    ("clusters", lambda f: write_stage(f, "clusters", StageData(tables={
        "main": pd.DataFrame({"cluster_id": [0], "size": [21]}),
        "assignments": pd.DataFrame({"chat_id": [f"c{i}" for i in range(20)] + ["c0"], "cluster_id": [0] * 21})})),
     "duplicate chat_id"),
    ("projections", lambda f: write_stage(f, "projections", StageData(tables={"main": pd.DataFrame(
        {"chat_id": [f"c{i}" for i in range(20)], "x": [np.inf] * 20, "y": 0.0})})), "non-finite"),
])
def test_sanity_names_what_is_wrong(tmp_path, stage, corrupt, expected):
    good_partition(tmp_path)
    corrupt(tmp_path)
    outcome = check_sanity(tmp_path, stage, get_profile("offline"), 25 if stage == "conversations" else 20)
    assert not outcome.passed
    assert expected in outcome.message


def test_sanity_fails_when_the_output_is_missing(tmp_path):
    outcome = check_sanity(tmp_path, "clusters", get_profile("offline"), 20)
    assert not outcome.passed and "no complete output" in outcome.message


def test_hierarchy_must_be_a_tree_with_base_clusters_as_leaves():
    def table(rows):
        return pd.DataFrame(rows, columns=["cluster_id", "parent_id", "is_leaf", "base_cluster_id"])

    good = table([("c0", "m1", True, 0), ("c1", "m1", True, 1), ("m1", None, False, None)])
    assert hierarchy_problems(good, {0, 1}) == []
    assert any("leaves" in p for p in hierarchy_problems(good, {0, 1, 2}))
    cycle = table([("c0", "m1", True, 0), ("m1", "m2", False, None), ("m2", "m1", False, None)])
    assert any("cycle" in p for p in hierarchy_problems(cycle, {0}))
    dangling = table([("c0", "m9", True, 0)])
    assert any("not in the table" in p for p in hierarchy_problems(dangling, {0}))
    childless = table([("c0", None, True, 0), ("m1", None, False, None)])
    assert any("without children" in p for p in hierarchy_problems(childless, {0}))


# -- evaluation writes every outcome to check_results ------------------------------------------------

def test_evaluate_stage_stores_one_row_per_outcome(paths):
    folder = paths.partition_dir("offline", "100")
    good_partition(folder, n=100)
    store(paths, *(record(i, stage="clusters", n_clusters=3, silhouette=0.2) for i in range(3)))
    current = record(9, stage="clusters", n_clusters=3, silhouette=0.2, run_id="run-now")
    results = evaluate_stage(paths, current, get_profile("offline"))
    assert set(results) == {"regression", "budgets", "sanity", "quality"}
    rows = query(paths.metrics, "SELECT * FROM check_results WHERE run_id = 'run-now'")
    assert set(rows["check_name"]) == {"regression_stage_work_s", "regression_peak_rss_mb", "regression_ari", "budget_memory",
                                       "budget_storage", "budget_clusters", "sanity", "quality_silhouette"}
    assert (rows["stage_record_id"] == current.record_id).all()
    assert rows["host_fingerprint"].eq(HOST).all() and rows["profile_hash"].eq("p1").all()
    regression = rows[rows["check_name"] == "regression_stage_work_s"].iloc[0]
    assert regression["samples"] == 3 and regression["baseline"] == pytest.approx(1.0)


# -- alerts -------------------------------------------------------------------------------------

class _Hook(BaseHTTPRequestHandler):
    received: list = []

    def do_POST(self):  # noqa: N802 - http.server's naming
        body = self.rfile.read(int(self.headers["Content-Length"]))
        _Hook.received.append(json.loads(body))
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args):
        pass


def failed_regression(paths: Paths) -> None:
    store(paths, *(record(i) for i in range(4)))
    current = record(9, wall_s=2.0, run_id="run-slow")
    from kura_perf.checks.outcome import write_outcomes

    write_outcomes(paths.metrics, current, [check_regression(paths, current, "stage_work_s").outcome()])


def test_alert_is_logged_stored_posted_and_raised_once(paths):
    failed_regression(paths)
    server = HTTPServer(("127.0.0.1", 0), _Hook)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_port}/hooks/secret-token"
        rows = unalerted_regressions(paths, None)
        assert len(rows) == 1 and rows[0]["run_id"] == "run-slow"
        alert = raise_alert(paths, rows[0], webhook_url=url)
    finally:
        server.shutdown()
        server.server_close()
    assert _Hook.received and _Hook.received[-1]["stage"] == "summaries"
    assert _Hook.received[-1]["check_name"] == "regression_stage_work_s" and "REGRESSION" in _Hook.received[-1]["text"]
    assert "secret-token" not in alert["delivered_to"]  # the URL's token is never stored
    stored = query(paths.metrics, "SELECT * FROM alerts")
    assert len(stored) == 1 and stored["check_record_id"][0] == rows[0]["record_id"]
    assert unalerted_regressions(paths, None) == []


def test_webhook_failure_is_recorded_not_fatal(paths):
    failed_regression(paths)
    row = unalerted_regressions(paths, None)[0]
    alert = raise_alert(paths, row, webhook_url="http://127.0.0.1:9/unreachable")
    assert "FAILED" in alert["delivered_to"]
    assert len(query(paths.metrics, "SELECT * FROM alerts")) == 1
