"""`kura-perf baseline show|pin RUN_ID|clear`: choose what the regression check compares against."""

from __future__ import annotations

import argparse


def cmd_baseline_show(args) -> int:
    import pandas as pd

    from kura_perf.checks import baselines
    from kura_perf.config import Paths

    table = baselines.show(Paths.from_env(), profile=args.profile, scale=args.scale)
    if not len(table):
        print("(no successful stage records yet: every check passes with 'no baseline')")
        return 0
    with pd.option_context("display.width", 200, "display.max_columns", 20, "display.max_rows", 500,
                           "display.float_format", "{:.3f}".format):
        print(table.to_string(index=False))
    return 0


def cmd_baseline_pin(args) -> int:
    from kura_perf.checks import baselines
    from kura_perf.config import Paths

    row = baselines.pin(Paths.from_env(), args.run_id)
    print(f"pinned run {row['run_id']} as the baseline of {row['profile']}|{row['scale']} on host "
          f"{row['host_fingerprint']}")
    return 0


def cmd_baseline_clear(args) -> int:
    from kura_perf.checks import baselines
    from kura_perf.config import Paths

    row = baselines.clear(Paths.from_env(), args.profile, args.scale, args.host)
    print(f"cleared the pin of {row['profile']}|{row['scale']} on host {row['host_fingerprint']}: "
          f"the rolling history of the last runs is the baseline again")
    return 0


def add_baseline_commands(subparsers: argparse._SubParsersAction) -> None:
    baseline = subparsers.add_parser("baseline", help="show, pin or clear the regression baselines")
    sub = baseline.add_subparsers(dest="baseline_command", required=True)

    show = sub.add_parser("show", help="the baseline in force per partition, stage and host")
    show.add_argument("--profile")
    show.add_argument("--scale")
    show.set_defaults(func=cmd_baseline_show)

    pin = sub.add_parser("pin", help="use a run as the reference for its partition and host")
    pin.add_argument("run_id")
    pin.set_defaults(func=cmd_baseline_pin)

    clear = sub.add_parser("clear", help="back to the rolling history for a partition")
    clear.add_argument("--profile", required=True)
    clear.add_argument("--scale", required=True)
    clear.add_argument("--host", help="host fingerprint (default: this machine)")
    clear.set_defaults(func=cmd_baseline_clear)
