"""The API path through the whole pipeline: counts agree with the simulator, faults are survived or
recorded, and the key never lands anywhere."""

import os
import subprocess
import sys

import pytest

from kura_perf.simulator.process import SimulatorProcess
from kura_perf.store import query

pytestmark = pytest.mark.slow

SECRET = "sk-kuraperf-TEST-SECRET-1234567890"

PROFILES = """
[api-fast]
summary_model = "openai:gpt-4o-mini"
naming_model = "openai:gpt-4o-mini"
embedding_model = "openai:text-embedding-3-small"
embedding_dimension = 256
clustering = "kmeans"
projection = "pca"
batch_size = 20
[api-fast.api]
simulate = true
concurrency = 8
max_retries = {retries}
timeout_s = 2
"""


def _run(home, profiles_file, sim_url, scale="100", extra_env=None):
    env = {**os.environ, "KURA_PERF_HOME": str(home), "KURA_PERF_SIMULATOR_URL": sim_url, "OPENAI_API_KEY": SECRET,
           "DAGSTER_HOME": str(home / "dagster_home"), **(extra_env or {})}
    return subprocess.run([sys.executable, "-m", "kura_perf.cli.main", "run", "--scale", scale, "--profile", "api-fast",
                           "--profiles", str(profiles_file)], capture_output=True, text=True, env=env, timeout=600)


def _by_status(log: dict) -> dict[str, int]:
    """Requests by status across endpoints, from the simulator's own log."""
    out: dict[str, int] = {}
    for entry in log["entries"]:
        out[entry["status"]] = out.get(entry["status"], 0) + entry["count"]
    return out


@pytest.fixture
def profiles_file(tmp_path):
    def make(retries=6):
        f = tmp_path / f"api-{retries}.toml"
        f.write_text(PROFILES.format(retries=retries))
        return f
    return make


def test_counts_match_the_simulator_log_and_the_key_never_lands(tmp_path, profiles_file):
    home = tmp_path / "data"
    config = {"chat": {"rpm": 6000, "latency_ms": 5, "p99_ms": 20}, "embeddings": {"rpm": 6000, "latency_ms": 2},
              "speed_factor": 4}
    with SimulatorProcess(config) as sim:
        out = _run(home, profiles_file(), sim.base_url)
        log = sim.log()
    assert out.returncode == 0, out.stderr[-3000:]
    rows = query(home / "metrics", "SELECT stage, status, api_calls, api_429s, api_errors, tokens_in, cost_usd, "
                                   "sim_speed_factor FROM stage_runs")
    assert set(rows["status"]) == {"success"}
    # Every record says how much faster than configured the simulator answered, and the run's table
    # labels each of those times as scaled, not as a prediction.
    assert rows["sim_speed_factor"].tolist() == [4.0] * len(rows)
    assert out.stdout.count("is scaled x4, not a prediction") == len(rows)
    ours = int(rows["api_calls"].fillna(0).sum())
    theirs = log["requests"]
    assert ours == theirs > 100  # 100 summaries + embedding batches + naming calls
    summaries = rows.set_index("stage").loc["summaries"]
    assert summaries["api_calls"] >= 100 and summaries["tokens_in"] > 0 and summaries["cost_usd"] > 0
    # The key: not in the output, the store, the stage outputs, the running markers or Dagster's event log.
    assert SECRET not in out.stdout + out.stderr
    hits = subprocess.run(["grep", "-rl", "--binary-files=text", SECRET, str(home)], capture_output=True, text=True)
    assert hits.stdout == "", f"API key found in: {hits.stdout}"


def test_faults_within_the_retry_budget_are_survived_and_counted(tmp_path, profiles_file):
    home = tmp_path / "data"
    config = {"chat": {"rpm": 6000, "latency_ms": 5, "p99_ms": 20}, "embeddings": {"rpm": 6000, "latency_ms": 2},
              "faults": {"error_rate": 0.1, "drop_rate": 0.1, "rate_limit_rate": 0.1, "forced_retry_after_s": 0.05}}
    with SimulatorProcess(config) as sim:
        out = _run(home, profiles_file(retries=8), sim.base_url)
        log = sim.log()
    assert out.returncode == 0, out.stderr[-3000:]
    rows = query(home / "metrics", "SELECT sum(api_calls) calls, sum(api_errors) errors, sum(api_429s) r429, "
                                   "sum(api_retries) retries FROM stage_runs")
    calls, errors, r429, retries = (int(rows[c][0]) for c in ("calls", "errors", "r429", "retries"))
    failed_by_sim = sum(n for status, n in _by_status(log).items() if status != "200")
    assert calls == log["requests"]
    assert errors == failed_by_sim > 0  # every injected fault is seen by our counters
    assert r429 > 0 and retries >= errors


def test_faults_beyond_the_budget_fail_the_stage_and_are_recorded(tmp_path, profiles_file):
    home = tmp_path / "data"
    config = {"chat": {"latency_ms": 1}, "faults": {"error_rate": 0.9}}
    with SimulatorProcess(config) as sim:
        out = _run(home, profiles_file(retries=1), sim.base_url)
    assert out.returncode == 1
    assert "summaries" in out.stderr and "Traceback" not in out.stderr
    rows = query(home / "metrics", "SELECT stage, status, error_message, api_errors FROM stage_runs "
                                   "WHERE stage = 'summaries'")
    assert rows["status"].tolist() == ["failed"]
    assert rows["api_errors"][0] > 0  # the calls it made before giving up are still counted
    assert "attempt" in rows["error_message"][0] or "retr" in rows["error_message"][0]


def test_real_endpoint_without_a_key_is_refused_before_starting(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "OPENAI_API_KEY"}
    env["KURA_PERF_HOME"] = str(tmp_path)
    out = subprocess.run([sys.executable, "-m", "kura_perf.cli.main", "run", "--profile", "openai-small"],
                         capture_output=True, text=True, env=env, timeout=120)
    assert out.returncode == 2
    assert "OPENAI_API_KEY is not set" in out.stderr and "simulated-openai" in out.stderr
    assert not (tmp_path / "metrics").exists()
