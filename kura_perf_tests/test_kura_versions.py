"""Kura from a spec, each in its own cached environment (issue 21): built once and reused, a spec pip
cannot install or whose kura does not import refused with the reason before anything runs, a checkout
with twice the API calls found worse side by side, and `--bisect` finding the commit that did it.

The Kura here is kura_perf_tests/fake_kura.py (no torch; pip builds it offline in seconds); the stages
run are the kura backend's conversations and summaries against the run's simulator."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from kura_perf.errors import KuraSpecError
from kura_perf.experiments import versions
from kura_perf.kura_envs import envs
from kura_perf.kura_envs.spec import parse_spec, resolve
from kura_perf.settings.run import RunSettings
from kura_perf.store import query
from kura_perf_tests.fake_kura import fake_kura_history, git, write_fake_kura

pytestmark = pytest.mark.xdist_group("kura_versions")

STAGES = ["conversations", "summaries"]
BAD_AT = 3  # the commit index from which the fake kura makes two calls per conversation
# The runs that compare specs: kura-tier5 with the simulator 50x faster. What these tests compare is the
# calls (deterministic, any speed); at real speed each run of 100 summaries only waited 10-20 s on the
# simulator's modelled latency, the bulk of these tests' time.
FAST = "kura-tier5-fast"
FAST_PROFILES = f"""
[{FAST}]
description = "kura-tier5 with the simulator 50x faster (the Kura-versions tests; times scaled x50)."
backend = "kura"
summary_model = "openai:gpt-4o-mini"
naming_model = "openai:gpt-4o-mini"
embedding_model = "minilm"
clustering = "kmeans"
clustering_params = {{ clusters_per_group = 10 }}
batch_size = 128
stage_timeout_s = 600
[{FAST}.api]
simulate = true
concurrency = 50
simulator = {{ speed_factor = 50, burst_s = 60, chat = {{ rpm = 30000, tpm = 150000000 }}, embeddings = {{ rpm = 10000, tpm = 10000000 }} }}
"""


def cli(root: Path, *args: str) -> subprocess.CompletedProcess:
    # No OpenAI key: the fake kura, like Kura 0.5.2, needs one to be imported at all; kura_perf must
    # give its children a placeholder (the simulator accepts any key).
    env = {**{k: v for k, v in os.environ.items() if k != "OPENAI_API_KEY"}, "KURA_PERF_HOME": str(root),
           "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    return subprocess.run([sys.executable, "-m", "kura_perf.cli.main", *args], capture_output=True, text=True,
                          env=env, timeout=1500)


@pytest.fixture(scope="module")
def history(tmp_path_factory):
    root = tmp_path_factory.mktemp("versions")
    shas = fake_kura_history(root / "kura", commits=5, bad_at=BAD_AT)
    (root / "profiles.toml").write_text(FAST_PROFILES)
    return root / "data", root / "kura", shas


def fast_profile(data: Path) -> list[str]:
    """The arguments that run the fast profile (its file sits beside the history's data root)."""
    return ["--profile", FAST, "--profiles", str(data.parent / "profiles.toml")]


def test_a_spec_resolves_to_a_cached_environment_once(tmp_path):
    write_fake_kura(tmp_path / "kura")
    spec = resolve(parse_spec(f"path:{tmp_path / 'kura'}"))
    first = envs.ensure_env(spec, tmp_path / "data")
    assert first.built and first.manifest["kura_version"] == "0.0.1"
    made = first.folder.stat().st_mtime_ns
    again = envs.ensure_env(resolve(parse_spec(f"path:{tmp_path / 'kura'}")), tmp_path / "data")
    assert not again.built and again.folder == first.folder and again.folder.stat().st_mtime_ns == made
    assert [p.name for p in (tmp_path / "data" / "kura_envs").iterdir() if not p.name.endswith(".lock")] == \
        [first.folder.name]  # no leftover build folder
    # Its own kura first, everything else from the main environment.
    out = subprocess.run([str(first.python), "-c", "import kura, pandas; print(kura.__file__); print(pandas.__file__)"],
                         capture_output=True, text=True, check=True, env={**os.environ, "OPENAI_API_KEY": "x"}
                         ).stdout.split()
    assert Path(out[0]).is_relative_to(first.folder) and not Path(out[1]).is_relative_to(first.folder)
    # A changed checkout is other code: a new environment.
    (tmp_path / "kura" / "kura" / "__init__.py").write_text('"""changed"""\n')
    changed = envs.ensure_env(resolve(parse_spec(f"path:{tmp_path / 'kura'}")), tmp_path / "data")
    assert changed.built and changed.folder != first.folder


def test_a_spec_pip_cannot_install_is_refused_with_pips_reason_before_any_stage(tmp_path):
    done = cli(tmp_path / "data", "run", "--kura", "kura==99.0", "--scale", "100", "--profile", "kura-tier5")
    assert done.returncode == 2, done.stderr
    lines = [line for line in done.stderr.splitlines() if line.startswith("kura-perf: error:")]
    assert len(lines) == 1 and "kura==99.0" in lines[0] and "Could not find a version that satisfies" in lines[0]
    assert "Traceback" not in done.stderr
    assert not (tmp_path / "data" / "metrics").exists()
    assert not [p for p in (tmp_path / "data" / "kura_envs").iterdir() if not p.name.endswith(".lock")]


def test_a_spec_whose_kura_does_not_import_is_refused_and_leaves_nothing(tmp_path):
    write_fake_kura(tmp_path / "kura")
    (tmp_path / "kura" / "kura" / "types.py").write_text("import no_such_module_here\n")
    with pytest.raises(KuraSpecError, match="does not import: ModuleNotFoundError: No module named 'no_such_module_here'"):
        envs.ensure_env(resolve(parse_spec(f"path:{tmp_path / 'kura'}")), tmp_path / "data")
    assert not [p for p in (tmp_path / "data" / "kura_envs").iterdir() if not p.name.endswith(".lock")]


@pytest.mark.parametrize("text, reason", [("kura>=0.5", "expected kura==<version>"),
                                          ("git:/nowhere", "expected kura==<version>"),
                                          ("path:/no/such/folder", "is not a folder")])
def test_malformed_specs_are_refused_in_one_line(text, reason):
    with pytest.raises(KuraSpecError, match=reason):
        resolve(parse_spec(text))


def test_an_unknown_revision_is_refused_with_gits_reason(history):
    _, repo, _ = history
    with pytest.raises(KuraSpecError, match="git rev-parse: fatal"):
        resolve(parse_spec(f"git:{repo}@no-such-branch"))


@pytest.mark.slow
def test_a_checkout_with_twice_the_calls_is_found_worse_side_by_side(history):
    data, repo, shas = history
    good = f"git:{repo}@{shas[0]}"
    done = cli(data, "versions", "--scale", "100", *fast_profile(data), "--stages", *STAGES,
               "--fail-on-regression", good, f"path:{repo}")
    assert done.returncode == 1, done.stderr[-3000:]
    assert "REGRESSION against" in done.stderr and "summaries path:" in done.stderr
    rows = query(RunSettings.from_env(home=data).paths.metrics,
                 "SELECT stage, kura_spec, kura_resolved, api_calls FROM stage_runs WHERE status = 'success'")
    summaries = rows[rows["stage"] == "summaries"].set_index("kura_spec")
    assert summaries.loc[good, "kura_resolved"] == shas[0]
    assert summaries.loc[f"path:{repo}", "kura_resolved"].startswith(shas[-1] + " tree ")
    assert summaries.loc[f"path:{repo}", "api_calls"] == 2 * summaries.loc[good, "api_calls"] > 0
    assert set(rows["kura_spec"]) == {good, f"path:{repo}"}  # every record carries its spec
    table = done.stdout
    assert "calls more" in table and "baseline" in table


@pytest.mark.slow
def test_bisect_finds_the_commit_that_doubled_the_calls(history):
    data, repo, shas = history
    done = cli(data, "versions", "--scale", "100", *fast_profile(data), "--stages", *STAGES,
               "--bisect", shas[0], "main", "--repo", str(repo))
    assert done.returncode == 0, done.stderr[-3000:]
    assert f"first bad commit: {shas[BAD_AT]} (last good: {shas[BAD_AT - 1]})" in done.stdout
    # The two ends and the midpoints binary search visits: fewer runs than commits.
    probes = [line for line in done.stdout.splitlines() if line.startswith("  ")]
    assert len(probes) < len(shas), done.stdout
    # Every env it built is cached: the commits it ran, each once.
    built = [json.loads((p / envs.MANIFEST).read_text())["resolved"]
             for p in (data / "kura_envs").iterdir() if p.name.startswith("commit-")]
    assert len(built) == len(set(built)) and shas[BAD_AT] in built


def test_the_bad_commit_range_must_descend(history):
    _, repo, shas = history
    with pytest.raises(KuraSpecError, match="does not descend"):
        versions.commits_between(repo, shas[3], shas[1])
    assert git(repo, "rev-parse", "main") == shas[-1]


def test_a_profile_that_does_not_run_kura_is_refused_before_any_environment(tmp_path):
    done = cli(tmp_path / "data", "versions", "--scale", "100", "--profile", "offline", "kura==0.5.2", "kura==0.5.4")
    assert done.returncode == 2 and "runs the reference backend, not Kura" in done.stderr, done.stderr
    assert not (tmp_path / "data" / "kura_envs").exists()


@pytest.mark.slow
def test_the_nightly_job_for_kura_fails_on_the_regression(history, monkeypatch):
    """The Dagster face of the nightly for Kura: its job's run fails, naming the stage and the spec."""
    from kura_perf.defs.kura_versions import kura_versions_job
    from kura_perf.defs.resources import KuraPerfResource

    data, repo, shas = history
    # The op's children inherit this process's environment (as under the daemon): no key, our kura_perf.
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.setenv("KURA_PERF_HOME", str(data))
    monkeypatch.setenv("PYTHONPATH", str(Path(__file__).resolve().parents[1]))
    specs = [f"git:{repo}@{shas[0]}", f"git:{repo}@{shas[-1]}"]
    config = {"ops": {"kura_versions_op": {"config": {"specs": specs, "scale": "100", "profile": FAST,
                                                        "stages": STAGES}}}}
    resource = KuraPerfResource(home=str(data), profiles_file=str(data.parent / "profiles.toml"))
    result = kura_versions_job.execute_in_process(run_config=config, raise_on_error=False,
                                                  resources={"kura_perf": resource})
    assert not result.success
    failure = result.failure_data_for_node("kura_versions_op").error.message
    assert f"regression summaries git:{repo}@{shas[-1]}" in failure and "calls more" in failure
