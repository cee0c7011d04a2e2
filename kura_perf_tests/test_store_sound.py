"""The metrics store stays sound under bad record files and hostile SQL (issue 23, defects 1, 3 and 9).

1. A record file that is readable but does not match its table's schema (a `wall_s` of strings, a
   foreign `{x: int}` file) is quarantined with a warning naming the file and the column; `db`,
   `report`, `advise`, `sql` and runs go on, and no foreign file becomes rows.
3. `kura-perf sql` is read-only: writes are refused with one line and exit 2, and the connection
   itself can write nothing even when a statement gets past that check.
9. `kura-perf db` reports the stranded records it recovered.
"""

from __future__ import annotations

import io
import logging
from datetime import datetime, timezone
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from kura_perf.store import query, validation, write_record
from kura_perf.store.db import connect_read_only
from kura_perf.store.record import StageRecord
from kura_perf.store.schema import STAGE_RUNS, TABLES
from kura_perf.store.validation import schema_problem, screen_record_files
from kura_perf.store.views import DERIVED


def _record(i: int, run_id: str = "run", stage: str = "summaries") -> dict:
    now = datetime.now(timezone.utc)
    return {"record_id": f"r{i}", "run_id": run_id, "stage": stage, "profile": "offline", "scale": "100",
            "scale_n": 100, "status": "success", "started_at": now, "finished_at": now, "wall_s": 1.0 + i,
            "peak_rss_mb": 100.0, "host_fingerprint": "h", "metered": True}


def _seed(metrics: Path, n: int) -> Path:
    """n good stage records; returns the folder they are in."""
    for i in range(n):
        path = write_record(metrics, "stage_runs", _record(i))
    return path.parent


def _mistyped(folder: Path, name: str = "mistyped.parquet") -> Path:
    """A well-formed Parquet file with the stage_runs columns, but wall_s holding strings."""
    row = {**_record(99), "wall_s": "1.5 seconds"}
    columns = {f.name: [row.get(f.name)] for f in STAGE_RUNS if f.name != "wall_s"}
    table = pa.table(columns, schema=pa.schema([f for f in STAGE_RUNS if f.name != "wall_s"]))
    table = table.append_column("wall_s", pa.array(["1.5 seconds"], pa.string()))
    path = folder / name
    pq.write_table(table, path)
    return path


def _quarantined(home: Path, name: str) -> list[Path]:
    return list((home / "metrics_quarantine").rglob(name))


@pytest.fixture(autouse=True)
def _fresh_screening():
    validation.forget_known_good()
    yield
    validation.forget_known_good()


@pytest.fixture
def cli(kp_home, tmp_path, monkeypatch):
    """kura_perf.cli.main.main on a private data root and Dagster home."""
    from kura_perf.cli.main import main

    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "dagster_home"))
    return main


# -- 1. record files that do not match the schema -----------------------------------------------------
def test_db_quarantines_a_mistyped_record_file_naming_file_and_column(kp_home, cli, capsys, caplog):
    folder = _seed(kp_home / "metrics", 3)
    bad = _mistyped(folder)
    with caplog.at_level(logging.WARNING):
        assert cli(["db"]) == 0
    assert not bad.exists() and _quarantined(kp_home, "mistyped.parquet")
    warning = [r.getMessage() for r in caplog.records if "mistyped.parquet" in r.getMessage()]
    assert len(warning) == 1 and "'wall_s'" in warning[0] and "\n" not in warning[0]
    assert "quarantined 1 record file(s) not matching the schema" in capsys.readouterr().out
    assert query(kp_home / "metrics", "SELECT count(*) n FROM stage_runs")["n"][0] == 3


@pytest.mark.parametrize("command", [
    ["sql", "select count(*) n, sum(wall_s) w from stage_runs", "--format", "csv"],
    ["report"],
    ["advise", "--scale", "100"],
])
def test_report_advise_and_sql_go_on_past_a_mistyped_record_file(kp_home, cli, tmp_path, capsys, caplog, command):
    folder = _seed(kp_home / "metrics", 2)
    bad = _mistyped(folder)
    args = command + (["--out", str(tmp_path / "report")] if command == ["report"] else [])
    with caplog.at_level(logging.WARNING):
        code = cli(args)  # before the fix: a ConversionException traceback out of main
    assert code in (0, 1)  # advise may find nothing that fits two records; it must not crash
    assert not bad.exists() and _quarantined(kp_home, "mistyped.parquet")
    assert "mistyped.parquet" in caplog.text and "wall_s" in caplog.text
    if command[0] == "sql":
        wall = sum(_record(i)["wall_s"] for i in range(2))
        assert capsys.readouterr().out.split() == ["n,w", f"2,{wall}"]


def test_a_run_goes_on_past_a_mistyped_record_file(kp_home, cli, caplog):
    """Before the fix every later run ended 'FAILED: conversations_checks: ConversionException': the
    checks read the earlier runs of the partition, one of them now with wall_s as a string."""
    assert cli(["run", "--scale", "100", "--stages", "conversations"]) == 0
    source = next((kp_home / "metrics" / "stage_runs").glob("date=*/*.parquet"))
    table = pq.read_table(source)
    wall = pa.array([f"{v} s" for v in table.column("wall_s").to_pylist()], pa.string())
    table = table.set_column(table.schema.get_field_index("wall_s"), "wall_s", wall)
    table = table.set_column(0, "record_id", pa.array(["mistyped"] * len(table), pa.string()))
    bad = source.parent / "mistyped.parquet"
    pq.write_table(table, bad)
    with caplog.at_level(logging.WARNING):
        assert cli(["run", "--scale", "100", "--stages", "conversations"]) == 0
    assert not bad.exists() and _quarantined(kp_home, "mistyped.parquet")
    rows = query(kp_home / "metrics", "SELECT status FROM stage_runs WHERE stage = 'conversations'")
    assert rows["status"].tolist() == ["success", "success"]


def test_a_foreign_parquet_file_never_becomes_rows(kp_home, caplog):
    metrics = kp_home / "metrics"
    folder = _seed(metrics, 6)
    foreign = folder / "foreign.parquet"
    pq.write_table(pa.table({"x": [1, 2, 3, 4]}), foreign)
    with caplog.at_level(logging.WARNING):
        rows = query(metrics, "SELECT count(*) n, count(record_id) ids FROM stage_runs")
    assert rows["n"][0] == 6 and rows["ids"][0] == 6  # before the fix: 10 rows, 4 of them all NULL
    assert not foreign.exists() and _quarantined(kp_home, "foreign.parquet")
    assert "foreign.parquet" in caplog.text and "'record_id'" in caplog.text


def test_an_older_record_file_without_later_columns_still_reads(kp_home):
    """Compat with existing data roots: a file written before columns were added keeps reading."""
    metrics = kp_home / "metrics"
    folder = _seed(metrics, 1)
    old = pa.table({"record_id": ["old"], "stage": ["summaries"], "status": ["success"], "wall_s": [3.0]})
    pq.write_table(old, folder / "old.parquet")
    rows = query(metrics, "SELECT record_id, wall_s, embedding_backend FROM stage_runs ORDER BY record_id")
    assert rows["record_id"].tolist() == ["old", "r0"]
    assert rows.set_index("record_id")["wall_s"]["old"] == 3.0
    assert not (kp_home / "metrics_quarantine").exists()


def test_extra_unknown_columns_are_accepted_and_ignored(kp_home):
    metrics = kp_home / "metrics"
    folder = _seed(metrics, 1)
    extra = pa.table({"record_id": ["x1"], "wall_s": [2.0], "system_site_packages": [True]})
    pq.write_table(extra, folder / "extra.parquet")
    rows = query(metrics, "SELECT * FROM stage_runs ORDER BY record_id")
    assert rows["record_id"].tolist() == ["r0", "x1"]
    assert "system_site_packages" not in rows.columns
    assert list(rows.columns) == STAGE_RUNS.names


def test_an_integer_where_a_double_is_wanted_is_accepted_a_string_is_not():
    ints = pa.schema([("record_id", pa.string()), ("wall_s", pa.int64()), ("started_at", pa.timestamp("ns"))])
    assert schema_problem("stage_runs", ints) is None
    strings = pa.schema([("record_id", pa.string()), ("items_in", pa.string())])
    problem = schema_problem("stage_runs", strings)
    assert "'items_in'" in problem and "string" in problem and "int64" in problem
    lists = pa.schema([("record_id", pa.string()), ("mem_timeline_mb", pa.list_(pa.string()))])
    assert "'mem_timeline_mb'" in schema_problem("stage_runs", lists)


def test_every_table_has_the_key_column_the_validation_requires():
    assert all(schema.names[0] == "record_id" for schema in TABLES.values())


def test_each_file_is_read_once_until_it_changes(kp_home, monkeypatch):
    """Validation reads only footers, and a file already found good is not read again (per process)."""
    metrics = kp_home / "metrics"
    for i in range(3):
        write_record(metrics, "stage_runs", _record(i), name=f"rec{i}")
    reads = []
    real = validation.pq.read_schema

    def counting(path, **kwargs):
        reads.append(Path(path).name)
        return real(path, **kwargs)

    monkeypatch.setattr(validation.pq, "read_schema", counting)
    screen_record_files(metrics)
    assert sorted(reads) == ["rec0.parquet", "rec1.parquet", "rec2.parquet"]
    reads.clear()
    query(metrics, "SELECT count(*) FROM stage_runs")
    assert reads == []
    write_record(metrics, "stage_runs", {**_record(1), "error_message": "rewritten, longer"}, name="rec1")
    screen_record_files(metrics)
    assert reads == ["rec1.parquet"]


# -- 3. kura-perf sql is read-only ---------------------------------------------------------------------
def _files(root: Path) -> dict[Path, bytes]:
    return {p: p.read_bytes() for p in root.rglob("*") if p.is_file()}


def _hostile(record: Path, tmp_path: Path) -> list[str]:
    return [
        f"copy (select * replace (999.0 as wall_s, 'failed' as status) from read_parquet('{record}')) "
        f"to '{record}' (format parquet)",
        f"copy (select 1 as x) to '{tmp_path / 'out.csv'}'",
        "copy (select 1 as x) to 'kurastore://stage_runs/new.parquet' (format parquet)",
        f"attach '{tmp_path / 'x.duckdb'}' as x; create table x.t as select 1 as a",
        f"create table t as select * from read_parquet('{record}')",
        "install httpfs",
        "load httpfs",
        "set enable_external_access = true",
        "reset lock_configuration",
        f"export database '{tmp_path / 'exported'}'",
        f"explain analyze copy (select 1 as x) to '{tmp_path / 'out2.csv'}'",
        "select 1; copy (select 1 as x) to 'kurastore://x.csv'",
        "pragma enable_profiling",
        "call checkpoint()",
    ]


def test_sql_refuses_every_write_with_one_line_and_exit_2(kp_home, cli, tmp_path, capsys):
    folder = _seed(kp_home / "metrics", 2)
    record = sorted(folder.glob("*.parquet"))[0]
    before = _files(tmp_path)
    for statement in _hostile(record, tmp_path):
        capsys.readouterr()
        assert cli(["sql", statement]) == 2, statement
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "read-only" in err and "Traceback" not in err, (statement, err)
    assert _files(tmp_path) == before  # the record's bytes unchanged, no file created anywhere


def test_the_connection_itself_cannot_write_even_past_the_statement_check(kp_home, tmp_path):
    """Read-only by construction: the statement check aside, the connection has no writable file system."""
    folder = _seed(kp_home / "metrics", 2)
    record = sorted(folder.glob("*.parquet"))[0]
    before = _files(tmp_path)
    con = connect_read_only(kp_home / "metrics")
    try:
        for statement in _hostile(record, tmp_path):
            if statement.startswith(("create table t", "select 1;", "pragma", "call")):
                continue  # in-memory only, or no write at all: the statement check refuses them for clarity
            with pytest.raises(duckdb.Error):
                con.execute(statement)
        assert con.execute("SELECT count(*) FROM stage_runs").fetchone()[0] == 2
    finally:
        con.close()
    assert _files(tmp_path) == before


def test_every_view_still_reads_under_the_read_only_connection(kp_home):
    metrics = kp_home / "metrics"
    _seed(metrics, 2)
    write_record(metrics, "check_results", {"record_id": "c1", "check_name": "regression_stage_work_s", "passed": False})
    for view in [*TABLES, *DERIVED]:
        assert query(metrics, f"SELECT * FROM {view}", read_only=True) is not None
    assert query(metrics, "SELECT count(*) n FROM latest_stage_runs", read_only=True)["n"][0] == 1
    rows = query(metrics, "SELECT count(*) n FROM read_parquet('kurastore://stage_runs/date=*/*.parquet')",
                 read_only=True)
    assert rows["n"][0] == 2
    assert len(query(metrics, "DESCRIBE stage_runs", read_only=True)) == len(STAGE_RUNS)
    for reading in ("SHOW TABLES", "SUMMARIZE stage_runs", "EXPLAIN SELECT * FROM scaling",
                    "EXPLAIN ANALYZE SELECT count(*) FROM run_summary", "EXPLAIN (FORMAT json) SELECT 1",
                    "PIVOT stage_runs ON status USING count(*) GROUP BY stage",
                    "WITH s AS (SELECT * FROM stage_runs) SELECT count(*) FROM s; SELECT 1 AS one"):
        assert len(query(metrics, reading, read_only=True)) >= 1, reading


@pytest.mark.parametrize("outside", ["select * from read_csv('/etc/hostname')",
                                     "select * from read_text('kurastore://../../etc/hostname')",
                                     "select * from glob('kurastore://../*')",
                                     "select * from read_csv('https://example.com/x.csv')"])
def test_sql_reaches_nothing_outside_the_store(kp_home, outside):
    _seed(kp_home / "metrics", 1)
    with pytest.raises(duckdb.Error):
        query(kp_home / "metrics", outside, read_only=True)


def test_a_store_on_object_storage_is_read_only_too():
    """The read-only file system wraps an fsspec store as well (cluster mode: results on object storage)."""
    import fsspec

    metrics = "memory://kura-perf-readonly-test/metrics"
    write_record(metrics, "stage_runs", {"record_id": "r1", "wall_s": 1.5}, name="fixed")
    assert query(metrics, "SELECT wall_s FROM stage_runs", read_only=True)["wall_s"].tolist() == [1.5]
    fs = fsspec.filesystem("memory")
    before = {p: fs.cat(p) for p in fs.find("/kura-perf-readonly-test")}
    con = connect_read_only(metrics)
    try:
        with pytest.raises(duckdb.Error):
            con.execute("copy (select 'x' as record_id) to 'kurastore://stage_runs/date=2026-01-01/fixed.parquet' "
                        "(format parquet)")
    finally:
        con.close()
        after = {p: fs.cat(p) for p in fs.find("/kura-perf-readonly-test")}
        fs.rm("/kura-perf-readonly-test", recursive=True)
    assert after == before


def test_an_error_naming_a_file_by_its_read_only_name_finds_the_local_file(tmp_path):
    from kura_perf.store.quarantine import file_named_in

    error = duckdb.IOException("Invalid Input Error: bad page in 'kurastore://stage_runs/date=2026-01-01/x.parquet'")
    assert file_named_in(error, tmp_path) == tmp_path / "stage_runs" / "date=2026-01-01" / "x.parquet"


def test_sql_reads_a_long_query_from_a_file_or_stdin(kp_home, cli, tmp_path, capsys, monkeypatch):
    _seed(kp_home / "metrics", 3)
    sql = "-- a long query\nSELECT count(*) AS n\nFROM stage_runs\nWHERE status = 'success'\n"
    (tmp_path / "q.sql").write_text(sql)
    capsys.readouterr()
    assert cli(["sql", "--file", str(tmp_path / "q.sql"), "--format", "csv"]) == 0
    assert capsys.readouterr().out.split() == ["n", "3"]
    monkeypatch.setattr("sys.stdin", io.StringIO(sql))
    assert cli(["sql", "-", "--format", "csv"]) == 0
    assert capsys.readouterr().out.split() == ["n", "3"]
    assert cli(["sql", "--file", str(tmp_path / "missing.sql")]) == 2
    assert "missing.sql" in capsys.readouterr().err


def test_sql_help_says_it_is_read_only(cli, capsys):
    with pytest.raises(SystemExit):
        cli(["sql", "--help"])
    assert "Read-only" in capsys.readouterr().out


# -- 9. db counts what it recovered ----------------------------------------------------------------------
def test_db_reports_the_stranded_records_it_recovered(kp_home, cli, capsys):
    """An old data root's pending record of a dead run (no running marker: its process is gone)."""
    (kp_home / "metrics_pending" / "dead-run").mkdir(parents=True)
    (kp_home / "metrics_pending" / "dead-run" / "summaries.json").write_text(
        StageRecord.from_dict(_record(7, run_id="dead-run")).to_json())
    assert cli(["db"]) == 0
    assert "recovered 1 stranded record(s)" in capsys.readouterr().out  # before the fix: "recovered 0"
    assert query(kp_home / "metrics", "SELECT record_id FROM stage_runs")["record_id"].tolist() == ["r7"]
