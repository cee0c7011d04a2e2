"""Eight `kura-perf run` processes at once on one data root and one fresh DAGSTER_HOME, four of them on
the same partition, while a DuckDB reader holds data/metrics.duckdb open (issue 9, defects 1 and 2):
every run succeeds, every record is present, and every bytes_written is the size of the files on disk."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
STAGES = ["conversations", "summaries"]
RUNS = ["offline", "offline", "offline", "offline", "kmeans", "kmeans", "agglomerative", "pca"]

READER = """
import sys, time, duckdb
con = duckdb.connect(sys.argv[1])
con.execute("CREATE TABLE IF NOT EXISTS analyst_notes (note VARCHAR)")
print("open", flush=True)
sys.stdin.read()   # hold the file until the test closes our stdin
con.close()
"""


def _env(home: Path, dagster_home: Path) -> dict:
    env = {**os.environ, "KURA_PERF_HOME": str(home), "DAGSTER_HOME": str(dagster_home),
           "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    return env


def test_eight_concurrent_runs_on_one_home(tmp_path):
    home, dagster_home = tmp_path / "data", tmp_path / "dagster_home"  # dagster_home does not exist yet
    home.mkdir()
    env = _env(home, dagster_home)
    reader = subprocess.Popen([sys.executable, "-c", READER, str(home / "metrics.duckdb")], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True, start_new_session=True)
    procs = []
    try:
        assert reader.stdout.readline().strip() == "open"
        for i, profile in enumerate(RUNS):
            log = open(tmp_path / f"run{i}.log", "w")
            procs.append((profile, log, subprocess.Popen(
                [sys.executable, "-m", "kura_perf.cli.main", "run", "--scale", "100", "--profile", profile,
                 "--stages", *STAGES], env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)))
        codes = [p.wait(timeout=600) for _, _, p in procs]
        logs = [(tmp_path / f"run{i}.log").read_text() for i in range(len(RUNS))]
        failed = [(RUNS[i], code, logs[i][-1500:]) for i, code in enumerate(codes) if code != 0]
        assert not failed, failed
        assert not any("Traceback" in text for text in logs)
    finally:
        for _, log, p in procs:
            if p.poll() is None:
                os.killpg(p.pid, 9)
                p.wait()
            log.close()
        reader.stdin.close()
        reader.wait(timeout=60)

    # One Dagster instance, migrated once: a single alembic head in every SQLite database.
    for db in dagster_home.rglob("*.db"):
        with sqlite3.connect(db) as con:
            tables = {r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type='table'")}
            if "alembic_version" in tables:
                assert con.execute("SELECT count(*) FROM alembic_version").fetchone()[0] == 1, db
    again = subprocess.run([sys.executable, "-m", "kura_perf.cli.main", "run", "--scale", "100", "--profile", "offline",
                            "--stages", "conversations"], env=env, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stderr[-2000:]

    # Every record of every run is there, and its bytes are the bytes on disk.
    out = subprocess.run([sys.executable, "-m", "kura_perf.cli.main", "sql", "--format", "json",
                          "SELECT run_id, profile, stage, status, bytes_written FROM stage_runs"],
                         env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    rows = json.loads(out.stdout)
    expected = len(RUNS) * len(STAGES) + 1
    assert len(rows) == expected, (len(rows), expected)
    assert {r["status"] for r in rows} == {"success"}
    assert len({r["run_id"] for r in rows}) == len(RUNS) + 1
    wrong = []
    for row in rows:
        folder = home / "storage" / row["profile"] / "100"
        manifest = json.loads((folder / f"{row['stage']}.manifest.json").read_text())
        on_disk = sum((folder / name).stat().st_size for name in manifest["files"])
        if not (row["bytes_written"] == sum(manifest["files"].values()) == on_disk):
            wrong.append((row, manifest["files"], on_disk))
    print(f"\nconcurrency: {len(RUNS) + 1} runs, records expected {expected} found {len(rows)}, "
          f"wrong bytes_written {len(wrong)}")
    assert not wrong, wrong
    leftovers = [p for p in home.rglob("*") if ".tmp" in p.name or "kp-tmp" in p.name or ".claimed-" in p.name]
    assert not leftovers, leftovers
