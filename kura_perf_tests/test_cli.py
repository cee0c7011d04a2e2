"""The CLI as a user meets it: clear one-line errors, never a traceback."""

import subprocess
import sys

import pytest


def kura_perf(*args, env_home=None, **kw):
    import os

    env = {**os.environ}
    if env_home:
        env["KURA_PERF_HOME"] = str(env_home)
    return subprocess.run([sys.executable, "-m", "kura_perf.cli.main", *args], capture_output=True, text=True, env=env,
                          timeout=300, **kw)


def test_profiles_lists_builtins():
    out = kura_perf("profiles")
    assert out.returncode == 0
    assert "offline" in out.stdout and "kmeans" in out.stdout


@pytest.mark.parametrize("args, message", [
    (["run", "--scale", "2k"], "unknown scale '2k'; expected one of 100, 1k"),
    (["run", "--profile", "nope"], "unknown profile 'nope'"),
    (["run", "--stages", "summarys"], "unknown stage(s) ['summarys']"),
    (["sql", "select * from no_such_table"], "query failed"),
])
def test_errors_are_one_clear_line(tmp_path, args, message):
    out = kura_perf(*args, env_home=tmp_path)
    assert out.returncode != 0
    assert message in out.stderr
    assert "Traceback" not in out.stderr


def test_bad_profiles_file_is_named(tmp_path):
    bad = tmp_path / "p.toml"
    bad.write_text("[mine]\nclustering = 'dbscan'\n")
    out = kura_perf("run", "--profile", "mine", "--profiles", str(bad), env_home=tmp_path)
    assert out.returncode == 2
    assert "p.toml: profile 'mine': key 'clustering'" in out.stderr
    assert "Traceback" not in out.stderr


def test_sql_on_empty_store(tmp_path):
    out = kura_perf("sql", "select count(*) as n from stage_runs", "--format", "csv", env_home=tmp_path)
    assert out.returncode == 0
    assert out.stdout.strip().splitlines() == ["n", "0"]


def test_breaking_point_exits_1_with_the_reason(tmp_path):
    profiles = tmp_path / "p.toml"
    profiles.write_text("[tight]\nstage_timeout_s = 0.2\n")
    out = kura_perf("run", "--scale", "100k", "--profile", "tight", "--profiles", str(profiles),
                    "--stages", "conversations", env_home=tmp_path)
    assert out.returncode == 1
    assert "BreakingPoint" in out.stderr and "time limit" in out.stderr
    assert "Traceback" not in out.stderr
