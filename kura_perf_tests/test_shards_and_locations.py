"""Shard planning and summing, fsspec result locations, and the cluster's service errors (no servers)."""

import json
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from kura_perf.files import outputs
from kura_perf.files.location import Location, resolve
from kura_perf.pipeline.shards import plan_shards, sum_shards
from kura_perf.services.local import check_services
from kura_perf.services.services import ServiceError, free_port
from kura_perf.services.settings import ClusterSettings
from kura_perf.settings.paths import Paths
from kura_perf.store import query, write_record
from kura_perf.store.record import StageRecord


def test_plan_shards_covers_rows_in_order():
    specs = plan_shards(10, 4)
    assert [(s.start, s.stop) for s in specs] == [(0, 2), (2, 5), (5, 8), (8, 10)]
    assert {s.count for s in specs} == {4}
    assert len(plan_shards(3, 8)) == 3  # never an empty shard
    assert [(s.start, s.stop) for s in plan_shards(0, 4)] == [(0, 0)]
    with pytest.raises(Exception, match="at least 1"):
        plan_shards(10, 0)


def test_stage_record_sums_shards_wall_is_critical_path():
    t0 = datetime(2026, 1, 1, tzinfo=timezone.utc)
    shards = [{"shard_index": i, "wall_s": w, "cpu_user_s": c, "cpu_sys_s": 0.5, "meter_cpu_s": 0.0,
               "peak_rss_mb": 500.0 + i, "items_in": 25, "started_at": t0 + timedelta(seconds=i),
               "worker": f"w{i % 2}@h pid={100 + i}", "api_calls": None, "cost_usd": None}
              for i, (w, c) in enumerate([(3.0, 2.0), (5.0, 4.0), (4.0, 3.0)])]
    merge = StageRecord(wall_s=1.0, cpu_user_s=0.25, cpu_sys_s=0.0, peak_rss_mb=300.0, started_at=t0,
                        finished_at=t0 + timedelta(seconds=10), extra="{}")
    fields = sum_shards(shards, merge)
    assert fields["wall_s"] == 6.0  # slowest shard (5) + merge (1)
    assert fields["cpu_user_s"] == 9.25 and fields["cpu_sys_s"] == 1.5
    assert fields["peak_rss_mb"] == 502.0 and fields["items_in"] == 75
    extra = json.loads(fields["extra"])
    assert extra["shards"] == 3 and extra["workers"] == ["w0@h", "w1@h"] and extra["elapsed_s"] == 10.0
    # Fewer worker processes than shards: one process ran shards 0 and 2 back to back (3 + 4 s).
    same = [r | {"worker": "w0@h pid=100"} if r["shard_index"] in (0, 2) else r for r in shards]
    assert sum_shards(same, merge)["wall_s"] == 8.0


def test_the_summed_record_keeps_its_work_time_against_the_summed_wall():
    """The merged record's wall is the slowest shard plus the merge: its stage_work_s must be that wall
    without the compile and start-up (the longest shard's plus the merge's), not the merge's own work."""
    t0 = datetime(2026, 1, 1, tzinfo=timezone.utc)
    shards = [{"shard_index": i, "wall_s": w, "jit_compile_s": j, "startup_s": 0.5, "setup_s": 2.0,
               "started_at": t0, "worker": f"w{i}@h pid={i}"}
              for i, (w, j) in enumerate([(5.0, 1.0), (4.0, 3.0)])]
    merge = StageRecord(wall_s=1.0, jit_compile_s=0.0, startup_s=0.0, stage_work_s=1.0, setup_s=0.0,
                        started_at=t0, finished_at=t0 + timedelta(seconds=6), extra="{}")
    fields = sum_shards(shards, merge)
    assert fields["wall_s"] == 6.0
    assert fields["jit_compile_s"] == 3.0 and fields["startup_s"] == 0.5 and fields["setup_s"] == 2.0
    assert fields["stage_work_s"] == 2.5  # 6 - 3 - 0.5
    older = [{k: v for k, v in r.items() if k not in ("jit_compile_s", "startup_s", "setup_s")} for r in shards]
    bare = StageRecord(wall_s=1.0, started_at=t0, finished_at=t0 + timedelta(seconds=6), extra="{}")
    assert sum_shards(older, bare)["stage_work_s"] == 6.0  # nothing known to take out: the wall


def test_stage_outputs_and_records_on_an_fsspec_url(tmp_path):
    """memory:// has no rename and no local path, like an object store: outputs, records and the
    views all go through fsspec; file:// takes the local fast path."""
    root = Location("memory://kura-test-results")
    folder = root / "storage" / "offline" / "100"
    data = outputs.StageData(tables={"ids": pd.DataFrame({"chat_id": ["a", "b"]})},
                             arrays={"main": np.arange(6, dtype=np.float32).reshape(2, 3)})
    sizes = outputs.write_stage(folder, "embeddings", data)
    assert outputs.has_stage(folder, "embeddings") and outputs.stage_bytes(folder, "embeddings") == sum(sizes.values())
    back = outputs.read_stage(str(folder), "embeddings")  # a URL string works too
    assert np.array_equal(back.arrays["main"], data.arrays["main"])
    assert back.tables["ids"]["chat_id"].tolist() == ["a", "b"]

    paths = Paths(tmp_path, results="memory://kura-test-results")
    now = datetime.now(timezone.utc)
    record = {"record_id": "r1", "run_id": "run", "stage": "embeddings", "status": "success", "wall_s": 1.5,
              "started_at": now, "finished_at": now, "host_fingerprint": "h1", "worker": "w1@h pid=1"}
    write_record(paths.metrics, "stage_runs", record, name="fixed")
    write_record(paths.metrics, "stage_runs", record | {"wall_s": 2.5}, name="fixed")  # replaces, no duplicate
    rows = query(paths.metrics, "SELECT record_id, wall_s, worker, silhouette FROM stage_runs")
    assert rows["record_id"].tolist() == ["r1"] and rows["wall_s"].tolist() == [2.5]
    assert rows["worker"].tolist() == ["w1@h pid=1"]
    assert not (tmp_path / "metrics").exists()  # nothing fell back to the local root

    local = resolve(f"file://{tmp_path}/shared")
    assert isinstance(local, Path) and local == (tmp_path / "shared").resolve()


def test_views_read_old_record_files_without_the_worker_column(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    folder = tmp_path / "stage_runs" / "date=2026-01-01"
    folder.mkdir(parents=True)
    pq.write_table(pa.table({"record_id": ["old"], "stage": ["summaries"], "wall_s": [1.0]}), folder / "old.parquet")
    rows = query(tmp_path, "SELECT record_id, worker FROM stage_runs")
    assert rows["record_id"].tolist() == ["old"] and rows["worker"].isna().all()


def test_services_down_give_a_clear_error_naming_service_and_address():
    closed = free_port()
    with pytest.raises(ServiceError, match=rf"Postgres .* at 127\.0\.0\.1:{closed} is not reachable"):
        check_services(ClusterSettings(postgres_port=closed, redis_port=free_port()), timeout_s=1)


def test_redis_down_is_named_with_its_address(monkeypatch, kp_home, capsys):
    """Postgres answering is not enough: with Redis down the error names Redis and its address."""
    import psycopg2

    from kura_perf.cli.main import main

    class _Connection:
        def close(self):
            pass

    monkeypatch.setattr(psycopg2, "connect", lambda **kwargs: _Connection())
    closed = free_port()
    with pytest.raises(ServiceError, match=rf"Redis \(Celery broker\) at 127\.0\.0\.1:{closed} is not reachable"):
        check_services(ClusterSettings(redis_port=closed), timeout_s=1)
    assert main(["cluster", "run", "--scale", "100"]) == 2  # no cluster state: a message, not a traceback
    assert "no cluster state" in capsys.readouterr().err


def test_baselines_keep_sharded_and_in_process_runs_apart(tmp_path):
    from kura_perf.checks.records import metric_history

    paths = Paths(tmp_path)
    t0 = datetime(2026, 1, 1, tzinfo=timezone.utc)
    base = {"stage": "embeddings", "scale": "1k", "profile_hash": "p", "host_fingerprint": "h", "status": "success",
            "metered": True, "started_at": t0, "finished_at": t0}
    write_record(paths.metrics, "stage_runs", base | {"record_id": "a", "run_id": "in-process", "wall_s": 100.0})
    write_record(paths.metrics, "stage_runs", base | {"record_id": "b", "run_id": "cluster", "wall_s": 40.0,
                                                      "extra": json.dumps({"shards": 4})})
    later = StageRecord.from_dict(base | {"run_id": "new", "finished_at": t0 + timedelta(hours=1)})
    assert metric_history(paths, later, "wall_s") == [100.0]
    assert metric_history(paths, later.replace(extra=json.dumps({"shards": 4})), "wall_s") == [40.0]
    assert metric_history(paths, later.replace(host_fingerprint="other"), "wall_s") == []  # only within one host


def test_report_scale_out_section_groups_by_host_and_marks_the_projection(tmp_path):
    from kura_perf.report.html import render_section
    from kura_perf.report.scale_out import project, scale_out_section

    t0 = datetime(2026, 1, 1, tzinfo=timezone.utc)
    for i, (host, worker) in enumerate([("h1", "worker-1@a"), ("h1", "worker-2@a"), ("h2", "worker-1@b")]):
        write_record(tmp_path, "shard_runs", {
            "record_id": f"s{i}", "run_id": "r", "stage": "embeddings", "status": "success", "scale": "1k",
            "scale_n": 1000, "items_in": 250, "wall_s": 10.0, "cpu_user_s": 9.0, "cpu_sys_s": 1.0,
            "host_fingerprint": host, "host_cpu": "cpu", "host_cores": 2, "worker": f"{worker} pid=1",
            "shard_index": i, "shard_count": 3, "started_at": t0, "finished_at": t0})
    write_record(tmp_path, "stage_runs", {
        "record_id": "e", "run_id": "r", "stage": "embeddings", "status": "success", "scale": "1k", "scale_n": 1000,
        "items_in": 750, "wall_s": 11.0, "items_per_s": 68.2, "host_fingerprint": "h1", "started_at": t0,
        "finished_at": t0, "extra": json.dumps({"shards": 3, "workers": ["worker-1@a", "worker-2@a"],
                                                "merge_wall_s": 1.0, "elapsed_s": 12.0})})
    section = scale_out_section(tmp_path)
    page = render_section(section)
    assert "Projection for K machines (projected)" in page and "PROJECTED, not measured" in page
    assert "cpu (h1)" in page and "cpu (h2)" in page  # one row per host and worker, never mixed
    assert page.count("worker-1@") == 2
    # 25 rows/s per worker, 2 workers per machine, no merge cost: 1M rows on 4 machines = 5,000 s
    assert project(25.0, 2, 0.0, 1_000_000, 4) == 5_000.0
    assert scale_out_section(tmp_path / "empty") is None


def test_the_embeddings_asset_fans_out_in_process_too(tmp_path):
    """The one embeddings definition: with `shards` in its config the graph-backed asset plans, embeds
    and merges the shards (here in one process; a cluster job does the same on Celery workers), and
    the downstream stages read the merged output like a single-step one."""
    from dagster import AssetKey, DagsterInstance

    from kura_perf.defs.launch import run_partition

    paths = Paths(tmp_path / "data")
    with DagsterInstance.ephemeral() as instance:
        sharded = run_partition("100", "pca", stages=["conversations", "summaries", "embeddings", "clusters"],
                                paths=paths, instance=instance, asset_config={"embeddings": {"shards": 3}})
        assert sharded.success, sharded.failure
        meta = instance.get_latest_materialization_event(AssetKey("embeddings")).asset_materialization.metadata
        assert meta["shards"].value == 3 and meta["rows"].value == 100
        plain = run_partition("100", "pca", stages=["embeddings"], paths=paths, instance=instance)
        assert plain.success, plain.failure
        meta = instance.get_latest_materialization_event(AssetKey("embeddings")).asset_materialization.metadata
        assert "shards" not in meta and meta["rows"].value == 100
    shards = query(paths.metrics, "SELECT * FROM shard_runs WHERE run_id = ?", [sharded.run_id])
    assert sorted(shards["shard_index"]) == [0, 1, 2] and shards["items_in"].sum() == 100
    records = {r["stage"]: r for r in sharded.records}
    assert set(records) == {"conversations", "summaries", "embeddings", "clusters"}
    assert json.loads(records["embeddings"]["extra"])["shards"] == 3
    assert [r["stage"] for r in plain.records] == ["embeddings"] and not query(
        paths.metrics, "SELECT * FROM shard_runs WHERE run_id = ?", [plain.run_id]).shape[0]
    assert outputs.read_stage(paths.partition_dir("pca", "100"), "embeddings").arrays["main"].shape[0] == 100


def test_the_summed_record_is_contended_when_any_shard_was():
    """Shards side by side on one host count each other as load: the merged record carries the most
    disturbed part's share and is contended when any part was (issue 19's quiet-box protocol)."""
    t0 = datetime(2026, 1, 1, tzinfo=timezone.utc)
    shards = [{"shard_index": i, "wall_s": 5.0, "started_at": t0, "worker": f"w{i}@h pid={i}",
               "host_other_cpu_s": other, "host_contention": share, "contended": share > 0.10}
              for i, (other, share) in enumerate([(0.2, 0.02), (4.0, 0.4)])]
    merge = StageRecord(wall_s=1.0, started_at=t0, finished_at=t0 + timedelta(seconds=6), extra="{}",
                        host_other_cpu_s=0.1, host_contention=0.05, contended=False)
    fields = sum_shards(shards, merge)
    assert fields["contended"] is True and fields["host_contention"] == 0.4
    assert fields["host_other_cpu_s"] == pytest.approx(4.3)
    older = [{k: v for k, v in r.items() if not k.startswith("host_") and k != "contended"} for r in shards]
    bare = StageRecord(wall_s=1.0, started_at=t0, finished_at=t0 + timedelta(seconds=6), extra="{}")
    unknown = sum_shards(older, bare)
    assert unknown["contended"] is None and unknown["host_contention"] is None  # unknown, never "quiet"
