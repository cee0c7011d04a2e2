"""`kura-perf compare` says plainly what it has (issue 20): a side with no recorded runs is one line
naming it and the command that records it (exit 1), not a table of dashes; a side whose profile belongs
to the other backend is refused (exit 2); bytes print in decimal units. The stores are fabricated from
stage records written with the store's writer, no pipeline runs."""

from __future__ import annotations

import re

import pytest

from kura_perf.cli.main import main
from kura_perf.report import fmt
from kura_perf.settings.run import RunSettings
from kura_perf.stages.base import STAGES
from kura_perf.store import write_records
from kura_perf_tests.test_report import _stage_record


def _store(root, sides) -> None:
    """sides: (backend, profile, scale label, n) per partition; one successful run of every stage each."""
    records = []
    for i, (backend, profile, label, n) in enumerate(sides):
        records += [_stage_record(i, f"{profile}-{label}", stage, n, label, profile=profile, backend=backend)
                    for stage in STAGES]
    write_records(root / "metrics", "stage_runs", records)


@pytest.fixture
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("KURA_PERF_HOME", str(tmp_path))
    monkeypatch.delenv("KURA_PERF_PROFILES", raising=False)
    return tmp_path


def _compare(capsys, *args):
    code = main(["compare", *args])
    out, err = capsys.readouterr()
    return code, out, err


def test_a_side_without_runs_is_one_line_naming_it_and_the_command_not_a_table(home, capsys):
    _store(home, [("reference", "offline", "100", 100), ("reference", "offline", "1k", 1000)])
    code, out, err = _compare(capsys, "reference:offline", "kura:kura-tier5")
    assert code == 1
    assert out == ""  # no table of dashes
    lines = err.strip().splitlines()
    assert len(lines) == 1
    assert "kura:kura-tier5 has no recorded runs at scales 100, 1k" in lines[0]
    assert "`kura-perf matrix --scales 100 1k --profiles kura-tier5`" in lines[0]
    assert "Traceback" not in err

    code, out, err = _compare(capsys, "--scale", "1k", "reference:offline", "kura:kura-tier5")
    assert (code, out) == (1, "")
    assert err.strip().splitlines() == [
        "kura-perf compare: R kura:kura-tier5 has no recorded runs at scale 1k: record them with "
        "`kura-perf run --scale 1k --profile kura-tier5`"]

    code, out, err = _compare(capsys, "--scale", "1k", "--scale", "10k", "kura:kura-tier5", "reference:offline")
    assert (code, out) == (1, "")
    assert len(err.strip().splitlines()) == 1 and "L kura:kura-tier5 has no recorded runs at scales 1k, 10k" in err


def test_an_empty_store_names_both_sides(home, capsys):
    _store(home, [("reference", "pca", "100", 100)])
    code, out, err = _compare(capsys, "reference:offline", "kura:kura")
    assert (code, out) == (1, "")
    lines = err.strip().splitlines()
    assert len(lines) == 2
    assert "reference:offline has no recorded runs" in lines[0] and "--profile offline" in lines[0]
    assert "kura:kura has no recorded runs" in lines[1] and "--profile kura" in lines[1]


def test_some_scales_missing_shows_what_exists_and_names_the_rest(home, capsys):
    _store(home, [("reference", "offline", "100", 100), ("reference", "offline", "1k", 1000),
                  ("kura", "kura-tier5", "1k", 1000)])
    code, out, err = _compare(capsys, "reference:offline", "kura:kura-tier5")
    assert code == 0, err
    missing = [line for line in out.splitlines() if "no recorded runs" in line]
    assert missing == ["R kura:kura-tier5 has no recorded runs at scale 100: record them with "
                       "`kura-perf run --scale 100 --profile kura-tier5`"]
    blocks = dict(re.findall(r"\n== (\S+) conversations ==[^\n]*\n(.*?)(?=\n\n==|\Z)", out, re.S))
    assert set(blocks) == {"100", "1k"}
    assert re.search(r"^\s+R ", blocks["1k"], re.M)  # both sides at 1k
    assert not re.search(r"^\s+R(/L)? ", blocks["100"], re.M)  # no rows of dashes for the side that never ran 100
    assert re.search(r"^outcome\s+L\s+completed", blocks["100"], re.M)

    # An asked scale neither side ran is named, not shown as a block of dashes.
    code, out, err = _compare(capsys, "--scale", "1k", "--scale", "10k", "reference:offline", "kura:kura-tier5")
    assert code == 0, err
    assert "\n== 10k" not in out
    assert "L reference:offline has no recorded runs at scale 10k" in out
    assert "R kura:kura-tier5 has no recorded runs at scale 10k" in out


@pytest.mark.parametrize("side, other, profile, backend, fits", [
    ("kura:offline", "reference:offline", "offline", "reference", "kura"),
    ("reference:kura-tier5", "kura:kura", "kura-tier5", "kura", "reference"),
])
def test_a_profile_of_the_other_backend_is_refused(home, capsys, side, other, profile, backend, fits):
    _store(home, [("reference", "offline", "1k", 1000), ("kura", "kura-tier5", "1k", 1000)])
    code, out, err = _compare(capsys, other, side)
    assert (code, out) == (2, "")
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err
    assert f"profile '{profile}' runs on the {backend} backend" in lines[0]
    fitting = [name for name, p in RunSettings.from_env().profiles().items() if p.backend == fits]
    assert fitting and f"{fits} profiles: {', '.join(fitting)}" in lines[0]


def test_an_unknown_profile_is_refused_with_the_profiles_that_fit(home, capsys):
    _store(home, [("reference", "offline", "1k", 1000)])
    code, out, err = _compare(capsys, "reference:offline", "kura:nope")
    assert (code, out) == (2, "")
    assert "unknown profile 'nope'" in err and "kura profiles: kura" in err


def test_bytes_print_in_decimal_units(home, capsys):
    records = []
    for i, (backend, profile) in enumerate((("reference", "offline"), ("kura", "kura-tier5"))):
        records += [_stage_record(i, f"{profile}-1k", stage, 1000, "1k", profile=profile, backend=backend,
                                  bytes_written=941_300 * (i + 1)) for stage in STAGES]
    write_records(home / "metrics", "stage_runs", records)
    for args in ([], ["--scale", "1k"]):
        code, out, err = _compare(capsys, *args, "reference:offline", "kura:kura-tier5")
        assert code == 0, err
        row = [line for line in out.splitlines() if line.startswith("bytes_written")][0]
        assert row.split()[2:] == ["941.3", "kB"] * len(STAGES) + ["5.6", "MB"]  # the total: 6 × 941.3 kB = 5.6478 MB
        assert "e+" not in out


def test_nbytes_is_decimal_with_labels_matching_the_math():
    assert fmt.nbytes(94.1e6) == "94.1 MB"  # was "89.8 MB": 1024-based math under a decimal label
    assert fmt.nbytes(1_500) == "1.5 kB"
    assert fmt.nbytes(2.5e9) == "2.5 GB"
    assert fmt.nbytes(999_960) == "1.0 MB"
    assert fmt.nbytes(999) == "999 B"


def test_a_side_measured_only_on_another_host_is_named_with_that_host(home, capsys):
    from kura_perf_tests.test_report import HOST

    records = [_stage_record(1, "o", stage, 1000, "1k") for stage in STAGES]
    records += [_stage_record(2, "k", stage, 1000, "1k", profile="kura-tier5", backend="kura",
                              host={**HOST, "host_fingerprint": "hostB"}) for stage in STAGES]
    write_records(home / "metrics", "stage_runs", records)
    code, out, err = _compare(capsys, "reference:offline", "kura:kura-tier5")
    assert (code, out) == (1, "")
    assert len(err.strip().splitlines()) == 1
    assert f"kura:kura-tier5 has no recorded runs at scale 1k on host {HOST['host_fingerprint']}" in err
    assert "its runs are on host hostB" in err and "`kura-perf run --scale 1k --profile kura-tier5`" in err
    code, out, err = _compare(capsys, "--scale", "1k", "reference:offline", "kura:kura-tier5")
    assert (code, out) == (1, "") and "never measured on the same host" in err
