"""`kura-perf checks` (the CI gate) and `kura-perf baseline show|pin RUN_ID|clear` (what the regression check
compares against). All read the run records, so `main` cleans up after dead runs first."""

from __future__ import annotations

import argparse
import sys

from kura_perf.checks import baselines
from kura_perf.checks.gate import evaluate_gate
from kura_perf.cli.printing import print_frame
from kura_perf.settings.paths import Paths


def cmd_baseline_show(args) -> int:
    table = baselines.show(Paths.from_env(), profile=args.profile, scale=args.scale)
    if not len(table):
        print("(no successful stage records yet: every check passes with 'no baseline')")
        return 0
    print_frame(table, empty=None, width=200, max_columns=20, max_rows=500, float_format="{:.3f}".format)
    return 0


def cmd_baseline_pin(args) -> int:
    row = baselines.pin(Paths.from_env(), args.run_id)
    print(f"pinned run {row['run_id']} as the baseline of {row['profile']}|{row['scale']} on host "
          f"{row['host_fingerprint']}")
    return 0


def cmd_baseline_clear(args) -> int:
    row = baselines.clear(Paths.from_env(), args.profile, args.scale, args.host)
    print(f"cleared the pin of {row['profile']}|{row['scale']} on host {row['host_fingerprint']}: "
          f"the rolling history of the last runs is the baseline again")
    return 0


def cmd_checks(args) -> int:
    result = evaluate_gate(Paths.from_env().metrics, run_ids=args.run, since=args.since, kind=args.kind)
    print(f"{result.checked} {args.kind} check outcome(s) of {len(result.runs)} run(s): {', '.join(result.runs)}")
    if result.passed:
        print("no failed checks")
        return 0
    print_frame(result.failures, empty=None, width=250, max_colwidth=100, float_format="{:.3f}".format)
    print(f"kura-perf checks: {len(result.failures)} failed {args.kind} check(s)", file=sys.stderr)
    return 1


def add_commands(subparsers: argparse._SubParsersAction) -> None:
    checks = subparsers.add_parser("checks", help="exit 1 when the latest run(s) failed regression checks (CI gate)")
    checks.add_argument("--run", nargs="+", help="these run ids (default: the run checked last)")
    checks.add_argument("--since", help="every run checked since this time (ISO, e.g. 2026-01-31T02:00:00Z)")
    checks.add_argument("--kind", default="regression", choices=["regression", "error"],
                        help="regression (default) or every ERROR-severity check (regression, sanity, quality)")
    checks.set_defaults(func=cmd_checks, reaps=True)

    baseline = subparsers.add_parser("baseline", help="show, pin or clear the regression baselines")
    sub = baseline.add_subparsers(dest="baseline_command", required=True)

    show = sub.add_parser("show", help="the baseline in force per partition, stage and host")
    show.add_argument("--profile")
    show.add_argument("--scale")
    show.set_defaults(func=cmd_baseline_show, reaps=True)

    pin = sub.add_parser("pin", help="use a run as the reference for its partition and host")
    pin.add_argument("run_id")
    pin.set_defaults(func=cmd_baseline_pin, reaps=True)

    clear = sub.add_parser("clear", help="back to the rolling history for a partition")
    clear.add_argument("--profile", required=True)
    clear.add_argument("--scale", required=True)
    clear.add_argument("--host", help="host fingerprint (default: this machine)")
    clear.set_defaults(func=cmd_baseline_clear, reaps=True)
