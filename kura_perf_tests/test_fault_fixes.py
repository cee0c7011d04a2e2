"""Defects a fault probe found (issue 9: 3, 8-12): each test reproduces one first."""

from __future__ import annotations

import subprocess
import sys

import pytest


def _option_strings(parser) -> set[str]:
    return {flag for action in parser._actions for flag in action.option_strings}


# -- 9: `kura-perf simulate-api` takes every option the simulator's own CLI has ---------------------
def test_simulate_api_subcommand_accepts_every_simulator_option():
    from kura_perf.cli import build_parser
    from kura_perf.simulator.args import build_parser as simulator_parser

    top = build_parser()
    sub = next(a for a in top._actions if a.dest == "command").choices["simulate-api"]
    assert _option_strings(simulator_parser()) <= _option_strings(sub)
    args = top.parse_args(["simulate-api", "--port", "8787", "--rpm", "5", "--outage", "1:2", "--fault-rate", "0.1"])
    assert (args.port, args.rpm, args.outage, args.fault_rate) == (8787, 5, [(1.0, 2.0)], 0.1)


def test_simulate_api_help_lists_the_settings():
    out = subprocess.run([sys.executable, "-m", "kura_perf.cli", "simulate-api", "--help"], capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "--rpm" in out.stdout and "--outage" in out.stdout and "unrecognized" not in out.stderr


# -- 10: profile and scale names cannot leave the data root ---------------------------------------------
@pytest.mark.parametrize("name", ["../../../escape", "..", "a/b", ".hidden", "x" * 65, "sp ace"])
def test_unsafe_profile_names_are_refused(name):
    from kura_perf.errors import ProfileError
    from kura_perf.profiles import parse_profiles

    with pytest.raises(ProfileError, match="profile name .* is not allowed"):
        parse_profiles({name: {"description": "x"}}, "p.toml")


def test_partition_dir_stays_under_the_storage_root(tmp_path):
    from kura_perf.config import Paths
    from kura_perf.errors import KuraPerfError

    paths = Paths(tmp_path / "data")
    assert paths.partition_dir("offline", "1k") == tmp_path / "data" / "storage" / "offline" / "1k"
    for profile, scale in (("../../escape", "100"), ("offline", "../../x"), ("offline", "..")):
        with pytest.raises(KuraPerfError, match="not allowed"):
            paths.partition_dir(profile, scale)
    (tmp_path / "data" / "storage").mkdir(parents=True)
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "data" / "storage" / "linked").symlink_to(tmp_path / "elsewhere")
    with pytest.raises(KuraPerfError, match="outside"):
        paths.partition_dir("linked", "100")


def test_run_with_an_escaping_profile_name_writes_nothing_outside(tmp_path):
    profiles = tmp_path / "p.toml"
    profiles.write_text('["../../../escape"]\ndescription = "x"\n')
    home = tmp_path / "a" / "b" / "c" / "data"
    out = subprocess.run([sys.executable, "-m", "kura_perf.cli", "run", "--profile", "../../../escape",
                          "--profiles", str(profiles), "--stages", "conversations"], capture_output=True, text=True,
                         timeout=300, env={**__import__("os").environ, "KURA_PERF_HOME": str(home),
                                           "DAGSTER_HOME": str(tmp_path / "dh")})
    assert out.returncode == 2
    assert "profile name '../../../escape' is not allowed" in out.stderr and "Traceback" not in out.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["p.toml"]
