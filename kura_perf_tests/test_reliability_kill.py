"""A death always leaves a trace (issue 9, defect 4): `kura-perf run` SIGKILLed mid-embeddings, then any
command -> a `died` record with the last peak and progress, listed in breaking_points, and the Dagster
run marked failed. Then Ctrl-C mid-embeddings -> exit 130, one line, the stage recorded as interrupted."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]


def _start(env, *stages):
    return subprocess.Popen([sys.executable, "-m", "kura_perf.cli.main", "run", "--scale", "1k", "--stages", *stages],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)


def _wait_for_progress(home: Path, proc, stage="embeddings", timeout_s=600) -> dict:
    """The stage's running marker once its heartbeat shows some items done (and not all)."""
    deadline = time.time() + timeout_s
    while time.time() < deadline:
        assert proc.poll() is None, proc.communicate()
        for path in (home / "metrics_running").glob(f"*/{stage}.json"):
            try:
                marker = json.loads(path.read_text())
            except (OSError, ValueError):
                continue
            progress = marker.get("progress") or {}
            if 0 < progress.get("done", 0) < progress.get("total", 0):
                return marker
        time.sleep(0.05)
    raise AssertionError("no progress seen")


def _stop(proc):
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGKILL)
    proc.communicate(timeout=60)


def test_sigkill_leaves_a_died_record_and_ctrl_c_an_interrupted_one(tmp_path):
    home = tmp_path / "data"
    env = {**os.environ, "KURA_PERF_HOME": str(home), "DAGSTER_HOME": str(tmp_path / "dh"),
           "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    proc = _start(env, "conversations", "summaries", "embeddings")
    try:
        marker = _wait_for_progress(home, proc)
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=60)
    finally:
        _stop(proc)
    assert marker["pid"] == proc.pid

    # any command: here `sql`, which itself must already see the died record
    out = subprocess.run([sys.executable, "-m", "kura_perf.cli.main", "sql", "--format", "json",
                          "SELECT * FROM breaking_points"], env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    rows = json.loads(out.stdout)
    assert len(rows) == 1, rows
    died = rows[0]
    assert (died["stage"], died["status"]) == ("embeddings", "died")
    assert died["error_type"] in ("ProcessGone", "OOMKilled")
    assert died["peak_rss_mb"] > 0 and 0 < died["items_done"] < died["items_total"] == 1000
    assert died["projection_kind"] == "linear-in-items" and died["projected_wall_s"] > died["elapsed_s"]
    assert not list((home / "metrics_running").rglob("*.json"))

    from dagster import DagsterInstance

    instance = DagsterInstance.from_config(str(tmp_path / "dh"))
    try:
        run = instance.get_run_by_id(died["run_id"])
        assert run.status.value == "FAILURE"
    finally:
        instance.dispose()

    # Ctrl-C (SIGINT to the process group, as a terminal sends it) during embeddings
    proc = _start(env, "embeddings")
    try:
        _wait_for_progress(home, proc)
        os.killpg(proc.pid, signal.SIGINT)
        _, err = proc.communicate(timeout=300)
    finally:
        _stop(proc)
    assert proc.returncode == 130, err[-3000:]
    assert "interrupted" in err and "Traceback" not in err and "DagsterExecutionInterruptedError\n" not in err
    out = subprocess.run([sys.executable, "-m", "kura_perf.cli.main", "sql", "--format", "json",
                          "SELECT stage, status, items_done FROM stage_runs WHERE status = 'interrupted'"],
                         env=env, capture_output=True, text=True, timeout=300)
    rows = json.loads(out.stdout)
    assert [(r["stage"], r["status"]) for r in rows] == [("embeddings", "interrupted")], rows
    assert rows[0]["items_done"] > 0
