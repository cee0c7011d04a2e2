import multiprocessing as mp
import subprocess
import sys
import textwrap
import time
from datetime import datetime, timezone

import duckdb
import pytest

from kura_perf.store import query, refresh_database, write_record
from kura_perf.store.leftovers import commit_leftovers
from kura_perf.store.record import StageRecord
from kura_perf.store.stage_records import unfinished_record, write_stage_record


def _record(i: int, run_id: str = "run", stage: str = "summaries", status: str = "success") -> dict:
    now = datetime.now(timezone.utc)
    return {"record_id": f"r{i}", "run_id": run_id, "stage": stage, "profile": "offline", "scale": "100",
            "scale_n": 100, "status": status, "started_at": now, "finished_at": now, "wall_s": 1.0 + i,
            "peak_rss_mb": 100.0, "host_fingerprint": "h", "mem_timeline_s": [0.0, 0.1],
            "mem_timeline_mb": [10.0, 11.0], "bytes_written": 1000 * i}


def test_empty_store_has_typed_views(tmp_path):
    out = query(tmp_path, "SELECT count(*) AS n FROM stage_runs")
    assert out["n"][0] == 0
    for view in ("latest_stage_runs", "run_summary", "scaling", "breaking_points", "regressions", "check_results",
                 "alerts", "sweep_results", "storage"):
        assert len(query(tmp_path, f"SELECT * FROM {view}")) == 0


def test_round_trip_and_derived_views(tmp_path):
    for i in range(3):
        write_record(tmp_path, "stage_runs", _record(i))
    write_record(tmp_path, "stage_runs", _record(9, stage="clusters", status="failed"))
    rows = query(tmp_path, "SELECT * FROM stage_runs ORDER BY record_id")
    assert list(rows["record_id"]) == ["r0", "r1", "r2", "r9"]
    assert list(rows["mem_timeline_mb"][0]) == [10.0, 11.0]
    assert query(tmp_path, "SELECT count(*) n FROM latest_stage_runs")["n"][0] == 1
    assert query(tmp_path, "SELECT runs FROM scaling")["runs"][0] == 3
    assert query(tmp_path, "SELECT stage FROM breaking_points")["stage"].tolist() == ["clusters"]
    summary = query(tmp_path, "SELECT stages, stages_ok FROM run_summary")
    assert (summary["stages"][0], summary["stages_ok"][0]) == (4, 3)


def test_unknown_column_is_refused(tmp_path):
    with pytest.raises(ValueError, match="unknown columns"):
        write_record(tmp_path, "stage_runs", {"record_id": "x", "nonsense": 1})


def _writer(metrics_dir, worker: int, count: int) -> None:
    for i in range(count):
        write_record(metrics_dir, "stage_runs", _record(worker * 1000 + i, run_id=f"w{worker}"))


READER = textwrap.dedent("""
    import sys, time, duckdb
    con = duckdb.connect(sys.argv[1])   # holds the database file for the whole test
    con.execute("SET enable_progress_bar = false")  # a slow query on a busy box would print a bar to stdout
    print("open", flush=True)
    seen = 0
    deadline = time.time() + 300  # a bound against a hang, not a speed check: a loaded box is slow
    while time.time() < deadline:
        seen = con.execute("SELECT count(*) FROM stage_runs").fetchone()[0]
        if seen >= int(sys.argv[2]):
            break
        time.sleep(0.05)
    print(seen, flush=True)
""")


@pytest.mark.slow
def test_concurrent_writers_with_an_analyst_holding_the_database(tmp_path):
    metrics, database = tmp_path / "metrics", tmp_path / "metrics.duckdb"
    write_record(metrics, "stage_runs", _record(0, run_id="seed"))
    assert refresh_database(metrics, database)
    workers, per_worker = 4, 40
    expected = 1 + workers * per_worker
    reader = subprocess.Popen([sys.executable, "-c", READER, str(database), str(expected)], stdout=subprocess.PIPE,
                              text=True)
    try:
        assert reader.stdout.readline().strip() == "open"
        # While the analyst holds the file, refreshing its views is refused without error...
        assert refresh_database(metrics, database) is False
        ctx = mp.get_context("spawn")
        procs = [ctx.Process(target=_writer, args=(metrics, w, per_worker)) for w in range(1, workers + 1)]
        for p in procs:
            p.start()
        # ...and our own queries keep working (they never open the analyst's file).
        while any(p.is_alive() for p in procs):
            query(metrics, "SELECT count(*) FROM stage_runs")
            time.sleep(0.02)
        assert all(p.exitcode == 0 for p in procs)
        out, _ = reader.communicate(timeout=330)
    finally:
        reader.kill()
    assert int(out.strip()) == expected  # the analyst sees every row through the view
    counts = query(metrics, "SELECT run_id, count(*) n, count(DISTINCT record_id) d FROM stage_runs GROUP BY 1")
    per_run = dict(zip(counts["run_id"], counts["n"]))
    assert all(per_run[f"w{w}"] == per_worker for w in range(1, workers + 1))
    assert (counts["n"] == counts["d"]).all()
    assert not list(metrics.rglob(".*.tmp"))


def test_leftover_hand_off_files_of_an_old_root_are_committed_once(tmp_path):
    """Earlier versions' metrics_pending/ files: committed by `kura-perf db`, each once."""
    pending, metrics = tmp_path / "metrics_pending", tmp_path / "metrics"
    for rec in (_record(1, run_id="a"), _record(2, run_id="b", stage="clusters")):
        (pending / rec["run_id"]).mkdir(parents=True)
        (pending / rec["run_id"] / f"{rec['stage']}.json").write_text(StageRecord.from_dict(rec).to_json())
    assert commit_leftovers(tmp_path, metrics) == 2
    assert commit_leftovers(tmp_path, metrics) == 0
    rows = query(metrics, "SELECT record_id, started_at FROM stage_runs ORDER BY 1")
    assert rows["record_id"].tolist() == ["r1", "r2"]
    assert rows["started_at"].notna().all()


def test_unfinished_records_share_one_constructor(tmp_path):
    identity = {"run_id": "u1", "stage": "embeddings", "profile": "offline", "scale": "1k", "scale_n": 1000}
    started = datetime(2026, 1, 1, tzinfo=timezone.utc)
    record = unfinished_record(identity, status="died", error_type="ProcessGone", error_message="x" * 5000,
                               started_at=started, finished_at=started.replace(second=30), metered=False)
    assert (record.status, record.wall_s, len(record.error_message)) == ("died", 30.0, 2000)
    assert record.record_id and record.run_id == "u1" and record.scale_n == 1000
    with pytest.raises(ValueError):
        unfinished_record(identity, status="success", error_type="", error_message="")
    write_stage_record(tmp_path / "metrics", record)
    assert query(tmp_path / "metrics", "SELECT status FROM stage_runs")["status"].tolist() == ["died"]


def test_database_file_is_queryable_by_duckdb_directly(tmp_path):
    metrics, database = tmp_path / "metrics", tmp_path / "m.duckdb"
    write_record(metrics, "stage_runs", _record(5))
    assert refresh_database(metrics, database)
    con = duckdb.connect(str(database), read_only=True)
    try:
        assert con.execute("SELECT count(*) FROM scaling").fetchone()[0] == 1
    finally:
        con.close()


def test_unmetered_runs_never_stand_for_a_partition(tmp_path):
    metered = _record(1)
    metered["metered"] = True
    unmetered = _record(2)  # later, with no memory figures
    unmetered.update(metered=False, peak_rss_mb=None, finished_at=datetime.now(timezone.utc))
    write_record(tmp_path, "stage_runs", metered)
    write_record(tmp_path, "stage_runs", unmetered)
    latest = query(tmp_path, "SELECT record_id, peak_rss_mb FROM latest_stage_runs")
    assert latest.to_dict("records") == [{"record_id": "r1", "peak_rss_mb": 100.0}]
    assert query(tmp_path, "SELECT runs FROM scaling")["runs"].tolist() == [1]


# -- the typed stage record ---------------------------------------------------------------------------
def test_the_stage_record_has_exactly_the_stage_runs_columns():
    """STAGE_RUNS is derived from the record (test_store_schema.py holds it to the frozen on-disk list)."""
    from kura_perf.store.record import COLUMN_NAMES
    from kura_perf.store.schema import STAGE_RUNS

    assert list(COLUMN_NAMES) == STAGE_RUNS.names
    assert "quality_levels" not in STAGE_RUNS.names  # carried by the record, stored in its own table


def test_a_misspelt_field_is_an_error_wherever_it_is_written():
    import dataclasses

    from kura_perf.store.record import UnknownRecordField

    with pytest.raises(TypeError):
        StageRecord(wall_sec=1.0)
    with pytest.raises(UnknownRecordField, match="wall_sec"):
        StageRecord.from_dict({"stage": "summaries", "wall_sec": 1.0})
    record = StageRecord(stage="summaries")
    with pytest.raises(UnknownRecordField, match="wall_sec"):
        record.replace(wall_sec=1.0)
    with pytest.raises(dataclasses.FrozenInstanceError):
        record.wall_sec = 1.0


def test_a_stage_record_goes_through_json_and_the_store_unchanged(tmp_path):
    """JSON (what a running marker keeps when the store cannot take a record), then Parquet: the same
    values come back, the file has the schema's types, and the carried per-level rows land in
    quality_levels, not in stage_runs."""
    import pyarrow.parquet as pq

    from kura_perf.checks.records import stored_record
    from kura_perf.settings.paths import Paths
    from kura_perf.store.schema import STAGE_RUNS

    paths = Paths(tmp_path)
    now = datetime.now(timezone.utc)
    record = StageRecord.from_dict(_record(3, run_id="rt", stage="clusters")).replace(
        started_at=now, finished_at=now, n_clusters=4, metered=True, jit_compiled=False, host_cores=2,
        extra='{"k": 1}', quality_levels=[{"level": 0, "n_clusters": 4, "ari": 0.5, "is_topic_level": True}])
    assert StageRecord.from_json(record.to_json()) == record
    write_stage_record(paths.metrics, record)
    [file] = (paths.metrics / "stage_runs").rglob("*.parquet")
    assert pq.read_schema(file).remove_metadata() == STAGE_RUNS
    assert stored_record(paths, "rt", "clusters") == record.replace(quality_levels=[])
    levels = query(paths.metrics, "SELECT record_id, stage, level, n_clusters FROM quality_levels")
    assert levels.to_dict("records") == [{"record_id": "r3", "stage": "clusters", "level": 0, "n_clusters": 4}]


def test_a_leftover_pending_file_naming_an_unknown_field_is_quarantined_not_stored(tmp_path):
    pending, metrics = tmp_path / "metrics_pending", tmp_path / "metrics"
    (pending / "r1").mkdir(parents=True)
    (pending / "r1" / "summaries.json").write_text('{"run_id": "r1", "stage": "summaries", "wall_sec": 1.0}')
    assert commit_leftovers(tmp_path, metrics) == 0
    assert not (metrics / "stage_runs").exists()
    assert list((tmp_path / "metrics_quarantine").rglob("*summaries.json*"))
