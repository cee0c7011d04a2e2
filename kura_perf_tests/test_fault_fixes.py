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
