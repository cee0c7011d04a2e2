"""A run killed between two stages leaves a record (issue 18): the stress memory case once reported
`lost_data` because a process killed after one stage's record and before the next stage's marker left
no trace at all. The run marker (store/liveness.py RunMarker) covers the whole run; the next command
records the stage that was next as died."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from kura_perf.store import liveness, query

ROOT = Path(__file__).resolve().parents[1]

# `kura-perf run` in a child that SIGKILLs itself right after the first stage: in its Dagster success
# hook (between stages: no stage marker exists; this one ran unchanged before issue 18, and left no
# record), or in the instant after its record was written and before its marker was removed (the
# record must not be doubled by a died one).
CHILD = r"""
import os, signal, sys
from kura_perf.store import liveness

KILL_AT = sys.argv[1]
if KILL_AT == "while building the definitions":  # the memory case: an OS cap is reached before any stage
    from kura_perf.defs import build

    def build_then_die(settings):
        os.kill(os.getpid(), signal.SIGKILL)

    build.build_definitions = build_then_die
elif KILL_AT == "in the stage's hook":
    clear = liveness.clear

    def clear_then_die(running_dir, run_id, stage):
        clear(running_dir, run_id, stage)
        os.kill(os.getpid(), signal.SIGKILL)

    liveness.clear = clear_then_die
else:
    note = liveness.note_recorded

    def note_then_die(running_dir, run_id, stage):
        note(running_dir, run_id, stage)
        os.kill(os.getpid(), signal.SIGKILL)

    liveness.note_recorded = note_then_die
from kura_perf.cli.main import main
sys.exit(main(["run", "--scale", "100", "--stages", "conversations", "summaries"]))
"""


@pytest.mark.slow
@pytest.mark.parametrize("kill_at", ["in the stage's hook", "before the stage marker is removed"])
def test_a_run_killed_between_stages_leaves_a_died_record_for_the_next_stage(kp_home, tmp_path, monkeypatch,
                                                                             kill_at):
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "dh"))
    out = subprocess.run([sys.executable, "-c", CHILD, kill_at], capture_output=True, text=True, timeout=600,
                         env={**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1"})
    assert out.returncode == -9, out.stderr[-3000:]
    running = kp_home / "metrics_running"
    assert len(list(running.glob("*/*.json"))) == (0 if kill_at == "in the stage's hook" else 1)  # stage markers

    from kura_perf.cli.main import main

    assert main(["db"]) == 0  # the next command reaps
    rows = query(kp_home / "metrics", "SELECT stage, status, error_message FROM stage_runs ORDER BY stage")
    assert rows["stage"].tolist() == ["conversations", "summaries"]
    assert rows["status"].tolist() == ["success", "died"]
    message = rows["error_message"].iloc[1]
    assert "between stages" in message and "after 'conversations'" in message
    assert not list(running.glob("*.json"))
    assert liveness.reap(kp_home) == []  # once only


@pytest.mark.slow
def test_a_run_killed_before_its_first_stage_leaves_a_died_record_for_it(kp_home, tmp_path, monkeypatch):
    """Killed while Dagster's asset graph is built (the `stress` memory case under a 160 MB cap dies
    there): the run marker is already up, so the first planned stage gets a died record."""
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "dh"))
    out = subprocess.run([sys.executable, "-c", CHILD, "while building the definitions"], capture_output=True,
                         text=True, timeout=600, env={**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1"})
    assert out.returncode == -9, out.stderr[-3000:]
    running = kp_home / "metrics_running"
    assert len(list(running.glob("*.json"))) == 1 and not list(running.glob("*/*.json"))  # the run's marker only

    from kura_perf.cli.main import main

    assert main(["db"]) == 0
    rows = query(kp_home / "metrics", "SELECT stage, status, error_message FROM stage_runs")
    assert rows["stage"].tolist() == ["conversations"] and rows["status"].tolist() == ["died"]
    assert "before its first stage" in rows["error_message"].iloc[0]
    assert not list(running.glob("*.json"))
