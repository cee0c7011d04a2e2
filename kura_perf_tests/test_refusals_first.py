"""Refusals come before anything slow (issue 20, item 8): a wrong command line is refused with exit 2 and
one line saying what is wrong, before Dagster is imported, its instance created, a record written or a
report built.

"Before anything slow" is checked by what exists afterwards, never by timing: each command runs in a
fresh interpreter (tests/ share one process, where Dagster is long imported), which reports its exit
code and which heavy modules it imported; the data root is then looked at for a Dagster home, metrics or
report files.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from kura_perf.stages.base import STAGES

REPO = Path(__file__).resolve().parents[1]

# `kura-perf ARGS` in a fresh interpreter; the last stdout line says how it ended and what it imported.
_CLI = """
import json, sys
from kura_perf.cli.main import main
code = main(sys.argv[1:])
heavy = ("dagster", "matplotlib", "kura_perf.defs.launch", "kura_perf.report.build")
print(json.dumps({"code": code, "imported": [m for m in heavy if m in sys.modules]}))
"""


def _kura_perf(tmp_path: Path, *args: str, env: dict | None = None, cwd: Path | None = None):
    """(exit code, heavy modules imported, stderr) of `kura-perf ARGS` with the data root tmp_path/data."""
    full_env = {**os.environ, "PYTHONPATH": str(REPO), "KURA_PERF_HOME": str(tmp_path / "data"), **(env or {})}
    full_env.pop("DAGSTER_HOME", None)  # the data root's own Dagster home is the one that must not appear
    done = subprocess.run([sys.executable, "-c", _CLI, *args], capture_output=True, text=True, env=full_env,
                          cwd=cwd or tmp_path, timeout=300)
    assert done.stdout.strip(), done.stderr
    ended = json.loads(done.stdout.strip().splitlines()[-1])
    return ended["code"], ended["imported"], done.stderr


def _one_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    assert lines[0].startswith("kura-perf: error: "), err
    return lines[0]


def _nothing_created(data_root: Path) -> None:
    """No Dagster home or instance, no record, no stage output, no report under the data root."""
    for made in ("dagster_home", "metrics", "metrics_running", "storage", "reports"):
        assert not (data_root / made).exists(), f"{made} was created under {data_root}"


def _refused_early(tmp_path, *args, env=None, cwd=None) -> str:
    """The one error line of a command that must be refused before anything slow."""
    code, imported, err = _kura_perf(tmp_path, *args, env=env, cwd=cwd)
    assert code == 2, err
    assert imported == [], f"imported {imported} before refusing"
    _nothing_created(tmp_path / "data")
    return _one_line(err)


# -- 1: a stage-name typo, and the other cheap options of `run` ----------------------------------------------
def test_a_stage_typo_is_refused_before_dagster_naming_the_nearest_stage(tmp_path):
    line = _refused_early(tmp_path, "run", "--scale", "100", "--stages", "sumaries")
    assert "--stages: unknown stage 'sumaries'" in line and "did you mean 'summaries'?" in line
    assert f"the stages are {', '.join(STAGES)}" in line


def test_a_stage_with_nothing_near_is_refused_without_a_guess(tmp_path):
    line = _refused_early(tmp_path, "run", "--stages", "conversations", "zzz")
    assert "unknown stage 'zzz'" in line and "did you mean" not in line and ", ".join(STAGES) in line


@pytest.mark.parametrize("args, expected", [
    (["--profile", "oflline"], ["unknown profile 'oflline'", "did you mean 'offline'?"]),
    (["--scale", "2k"], ["unknown scale '2k'", "expected one of 100, 1k"]),
    (["--step", "mod:fn"], ["--step: needs --shape custom"]),
    (["--shape", "minimal", "--stages", "summaries"], ["--stages and --shape exclude each other"]),
    (["--shape", "custom", "--after", "sumaries"], ["custom_after: 'sumaries'", "did you mean 'summaries'?"]),
    (["--shape", "streaming", "--stream-batch-size", "0"], ["stream_batch_size: must be a positive number"]),
])
def test_other_cheap_options_of_run_are_refused_before_dagster(tmp_path, args, expected):
    line = _refused_early(tmp_path, "run", *args)
    for text in expected:
        assert text in line, line


def test_a_stage_whose_input_is_not_stored_is_refused_before_dagster(tmp_path):
    """It used to start Dagster and fail inside the run: exit 1 and a failed record for a wrong command line."""
    line = _refused_early(tmp_path, "run", "--scale", "100", "--stages", "summaries", "embeddings")
    folder = tmp_path / "data" / "storage" / "offline" / "100"
    assert "stage 'summaries' reads the output of 'conversations'" in line and str(folder) in line
    assert "add conversations to --stages" in line


def test_stages_whose_inputs_are_stored_or_run_first_pass_the_check(tmp_path):
    from kura_perf.pipeline.preflight import check_stage_inputs

    folder = tmp_path / "part"
    folder.mkdir()
    check_stage_inputs(folder, ["conversations", "summaries", "embeddings"])  # each input runs before it
    (folder / "conversations.manifest.json").write_text("{}")
    check_stage_inputs(folder, ["summaries"])  # its input is stored


# -- 3: a profile's data_file that is not there ---------------------------------------------------------------
def _profile_with_missing_data(tmp_path: Path) -> Path:
    (tmp_path / "cfg").mkdir()
    profiles = tmp_path / "cfg" / "mine.toml"
    profiles.write_text('[mine]\ndata_file = "chats/missing.jsonl"\n')
    return profiles


def _names_the_missing_data_file(line: str, cwd: Path, profiles: Path) -> None:
    assert f"profile 'mine' (defined in {profiles})" in line and "key 'data_file'" in line, line
    assert f"chats/missing.jsonl, resolved against the working directory {cwd}: {cwd / 'chats/missing.jsonl'}" in line
    assert "no such file" in line


@pytest.mark.parametrize("given_by", ["--profiles", "KURA_PERF_PROFILES"])
def test_run_refuses_a_missing_relative_data_file_naming_profile_and_resolved_path(tmp_path, given_by):
    profiles = _profile_with_missing_data(tmp_path)
    options, env = (["--profiles", "cfg/mine.toml"], None) if given_by == "--profiles" else \
        ([], {"KURA_PERF_PROFILES": "cfg/mine.toml"})
    line = _refused_early(tmp_path, "run", "--scale", "100", "--profile", "mine", *options, env=env)
    _names_the_missing_data_file(line, tmp_path, profiles)


def test_matrix_refuses_a_missing_relative_data_file_from_its_profiles_file(tmp_path):
    profiles = _profile_with_missing_data(tmp_path)
    line = _refused_early(tmp_path, "matrix", "--scales", "100", "--profiles", "mine",
                          "--profiles-file", "cfg/mine.toml")
    _names_the_missing_data_file(line, tmp_path, profiles)


def test_a_missing_relative_profiles_file_says_what_it_was_resolved_against(tmp_path):
    line = _refused_early(tmp_path, "run", "--profile", "mine", env={"KURA_PERF_PROFILES": "cfg/none.toml"})
    assert f"profiles file not found: cfg/none.toml, resolved against the working directory {tmp_path}: " \
           f"{tmp_path / 'cfg/none.toml'}" in line and "KURA_PERF_PROFILES" in line


def test_a_builtin_profile_with_a_missing_absolute_data_file_is_named_as_such(tmp_path):
    from kura_perf.errors import KuraPerfError
    from kura_perf.pipeline.preflight import check_run_inputs
    from kura_perf.settings.run import RunSettings

    gone = tmp_path / "gone.jsonl"
    profiles = tmp_path / "p.toml"
    profiles.write_text(f'[offline]\ndata_file = "{gone}"\n')  # an extra file's profile wins over a built-in
    settings = RunSettings.from_env(home=tmp_path / "data", profiles_file=str(profiles))
    with pytest.raises(KuraPerfError) as refused:
        check_run_inputs(settings, "offline", scale_n=100)
    message = str(refused.value)
    assert f"profile 'offline' (defined in {profiles}), key 'data_file': {gone}: expected" in message
    assert "resolved against" not in message  # an absolute path is what it says
    assert not (tmp_path / "data").exists()


# -- 2: `report --out DIR` into a folder holding someone else's index.html -----------------------------------
def test_report_refuses_a_foreign_index_before_building_anything(tmp_path):
    theirs = tmp_path / "theirs"
    theirs.mkdir()
    (theirs / "index.html").write_text("their own page")
    code, imported, err = _kura_perf(tmp_path, "report", "--out", str(theirs))
    assert code == 2, err
    line = _one_line(err)
    assert f"refusing to overwrite index.html in {theirs}" in line
    assert not {"matplotlib", "kura_perf.report.build", "dagster"} & set(imported), imported
    assert (theirs / "index.html").read_text() == "their own page"
    assert [p.name for p in theirs.iterdir()] == ["index.html"]  # no staging folder, no manifest
    _nothing_created(tmp_path / "data")


def test_build_report_checks_its_destination_before_reading_a_record(tmp_path, monkeypatch):
    """The Dagster asset's path (defs/report.py) goes through build_report: the same refusal, first."""
    from kura_perf.errors import KuraPerfError
    from kura_perf.report import build
    from kura_perf.settings.paths import Paths

    monkeypatch.setattr(build, "load_report_data", lambda *_a, **_k: pytest.fail("records were read"))
    theirs = tmp_path / "theirs"
    theirs.mkdir()
    (theirs / "index.html").write_text("their own page")
    with pytest.raises(KuraPerfError, match="refusing to overwrite index.html"):
        build.build_report(Paths(tmp_path / "data"), theirs)
    assert [p.name for p in theirs.iterdir()] == ["index.html"]


def test_report_refuses_its_destination_before_cleaning_up_after_dead_runs(tmp_path, monkeypatch, capsys):
    """The clean-up reads and may write run records (and open the Dagster instance): a refused report
    must not get that far."""
    from kura_perf.cli import dagster_home
    from kura_perf.cli.main import main

    monkeypatch.setattr(dagster_home, "clean_up_dead_runs", lambda *_a, **_k: pytest.fail("cleaned up first"))
    monkeypatch.setenv("KURA_PERF_HOME", str(tmp_path / "data"))
    theirs = tmp_path / "theirs"
    theirs.mkdir()
    (theirs / "index.html").write_text("their own page")
    assert main(["report", "--out", str(theirs)]) == 2
    assert f"refusing to overwrite index.html in {theirs}" in _one_line(capsys.readouterr().err)
