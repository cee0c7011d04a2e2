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


def test_profiles_has_a_header_and_aligned_columns_with_every_builtin(monkeypatch, capsys):
    from kura_perf.cli.main import main
    from kura_perf.profiles import load_profiles

    monkeypatch.delenv("KURA_PERF_PROFILES", raising=False)
    assert main(["profiles"]) == 0
    lines = capsys.readouterr().out.splitlines()
    header = lines[0]
    columns = ["profile", "backend", "embedding", "clustering", "API or offline", "description"]
    starts = [header.index(name) for name in columns]
    assert starts == sorted(starts) and starts[0] == 0
    profiles = load_profiles()
    assert [line.split()[0] for line in lines[1:]] == list(profiles)  # every built-in, pacer-sweep too
    for line, (name, profile) in zip(lines[1:], profiles.items()):
        cells = [line[a:b].strip() for a, b in zip(starts, starts[1:])] + [line[starts[-1]:]]
        assert cells[0] == name and cells[1] == profile.backend, line  # each cell under its header
        assert cells[2].startswith(profile.embedding_model) and cells[3] == profile.clustering, line
        calls = "offline" if not profile.uses_api() else (
            "API (simulated)" if profile.api.simulate else "API (real endpoint)")
        assert cells[4] == calls, line
        assert cells[5] == profile.description, line
        for start in starts[1:]:  # a column starts after a blank: no cell runs into the next one
            assert line[start - 1] == " ", line
    assert any(line.split()[0] == "pacer-sweep" for line in lines[1:])


def test_readme_profile_table_names_every_builtin_profile():
    """README.md's Profiles table names each built-in profile in its first column (so it cannot drift again)."""
    import re
    from pathlib import Path

    from kura_perf.profiles import load_profiles

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    section = readme.split("\n## Profiles\n", 1)[1].split("\n## ", 1)[0]
    named = {name for row in section.splitlines() if row.startswith("| `")
             for name in re.findall(r"`([^`]+)`", row.split("|")[1])}
    missing = [name for name in load_profiles() if name not in named]
    assert not missing, f"README.md's profile table does not name: {missing}"


@pytest.mark.parametrize("args, message", [
    (["run", "--scale", "2k"], "unknown scale '2k'; expected one of 100, 1k"),
    (["run", "--profile", "nope"], "unknown profile 'nope'"),
    (["run", "--stages", "summarys"], "unknown stage 'summarys' (did you mean 'summaries'?)"),
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


@pytest.mark.slow
def test_breaking_point_exits_1_with_the_reason(tmp_path):
    profiles = tmp_path / "p.toml"
    profiles.write_text("[tight]\nstage_timeout_s = 0.2\n")
    out = kura_perf("run", "--scale", "100k", "--profile", "tight", "--profiles", str(profiles),
                    "--stages", "conversations", env_home=tmp_path)
    assert out.returncode == 1
    assert "BreakingPoint" in out.stderr and "time limit" in out.stderr
    assert "Traceback" not in out.stderr


def _subcommands(parser, prefix=()):
    """(command words, their parser) for every leaf subcommand."""
    import argparse

    actions = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    if not actions:
        yield prefix, parser
        return
    for name, child in actions[0].choices.items():
        yield from _subcommands(child, prefix + (name,))


def test_every_command_says_whether_it_cleans_up_after_dead_runs():
    from kura_perf.cli.main import build_parser

    reaps = {" ".join(words): child.get_default("reaps") for words, child in _subcommands(build_parser())}
    assert None not in reaps.values(), [c for c, r in reaps.items() if r is None]
    # no run record read or written: no clean-up (run and db do their own, with the Dagster runs)
    assert not any(reaps[c] for c in ("profiles", "dagster-home", "simulate-api", "run", "db", "examples",
                                      "cluster up", "cluster down", "cluster status"))
    # they read run records: a stage whose process died must show as `died`
    assert all(reaps[c] for c in ("sql", "report", "advise", "compare", "checks", "baseline show", "sweep",
                                  "matrix", "cluster run"))


def test_profiles_does_not_clean_up_after_dead_runs(monkeypatch, capsys):
    from kura_perf.cli import dagster_home
    from kura_perf.cli.main import main

    def no_clean_up(*_a, **_k):
        raise AssertionError("profiles cleaned up after dead runs")

    monkeypatch.setattr(dagster_home, "clean_up_dead_runs", no_clean_up)
    assert main(["profiles"]) == 0
    assert "offline" in capsys.readouterr().out


def test_help_and_profiles_import_no_dagster():
    code = ("import sys; from kura_perf.cli.main import main\n"
            "try:\n    main(['profiles'])\nexcept SystemExit:\n    pass\n"
            "print(sorted(m for m in ('dagster', 'torch', 'umap', 'celery', 'kura') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().splitlines()[-1] == "[]"


def test_every_commands_help_renders():
    """`kura-perf <command> --help` for every command: argparse formats help strings with %, so a literal
    '10%' in one (the matrix's --wait-quiet said "at most 10% of the box") was a bare traceback on --help."""
    import argparse

    from kura_perf.cli.main import build_parser

    parser = build_parser()
    commands = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices
    assert {"run", "matrix", "publish", "calibrate", "predict", "versions"} <= set(commands)
    for name, sub in commands.items():
        text = sub.format_help()
        assert text.startswith("usage: kura-perf"), name
    assert "at most 10% of the box" in commands["matrix"].format_help()
