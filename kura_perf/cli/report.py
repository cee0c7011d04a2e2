"""`kura-perf report | advise | compare`: what the recorded runs say (every one reads the store)."""

from __future__ import annotations

import sys
from pathlib import Path

import pandas as pd

from kura_perf.cli.printing import print_frame
from kura_perf.report import fmt
from kura_perf.report.advisor import Limits, NothingFits, advise, parse_scale
from kura_perf.report.compare import (
    NoRecords,
    check_sides,
    compare_partitions,
    compare_scales,
    compare_truth_levels,
    display_table,
    missing_lines,
    render_side_by_side,
    render_truth_levels,
)
from kura_perf.report.destination import check_destination
from kura_perf.settings.paths import Paths
from kura_perf.settings.run import RunSettings


def check_report_destination(args) -> None:
    """`kura-perf report`'s refusals, run by `main` first (before the clean-up after dead runs, the
    report's imports or any record read): --out is a file, or a folder with someone else's index.html."""
    out = getattr(args, "out", None)
    check_destination(Path(out).resolve() if out else Paths.from_env().reports.resolve(), default=not out)


def report_command(args) -> int:
    """`kura-perf report`: build the report for the configured data root and say where it is (args.out optional)."""
    from kura_perf.report.build import build_report  # matplotlib and the report's modules: start-up time

    paths = Paths.from_env()
    out = getattr(args, "out", None)
    result = build_report(paths, Path(out) if out else None)
    if result.empty:
        if result.usability_only:
            print(f"no stage runs recorded yet in {paths.metrics}; wrote the Kura usability sections: "
                  f"{result.index_html}")
            return 0
        print(f"no runs recorded yet in {paths.metrics}; wrote a placeholder report: {result.index_html}")
        print("record one with: kura-perf run --scale 1k")
        return 0
    print(result.headline_markdown)
    print(f"\nreport: {result.index_html} ({len(result.figures)} figures)")
    print(f"open:   file://{result.index_html}")
    return 0


def cmd_advise(args) -> int:
    n = parse_scale(args.scale)
    limits = Limits(args.max_hours, args.max_cost, args.max_ram, args.min_ari)
    paths = Paths.from_env()
    try:
        advice = advise(paths.metrics, n, limits)
    except NothingFits as exc:
        print(f"kura-perf advise: {exc}", file=sys.stderr)
        return 1
    print(f"Profiles at {fmt.conversations(n)} conversations, {limits.describe()}; records of {advice.host} "
          f"in {paths.metrics}")
    print_frame(advice.table(), empty=None, width=250, max_colwidth=120, max_columns=10)
    print(f"\n{advice.quality_note()}")
    for warning in advice.quality_warnings():
        print(f"quality collapse: {warning}")
    if not advice.fitting:
        print(f"\nkura-perf advise: {advice.refusal()}", file=sys.stderr)
        return 1
    if not advice.recommended:  # one candidate with figures: nothing to recommend it over
        only = advice.fitting[0].name
        print(f"\nonly profile measured: {only} (not a recommendation: record another profile at this scale, "
              "e.g. kura-perf run --scale 1k --profile <other>, to compare)")
        return 0
    print(f"\nrecommended: {', '.join(c.name for c in advice.recommended)}")
    return 0


def cmd_compare(args) -> int:
    """Exit 2 for a side that is not backend:profile of a known profile of that backend (bad input); exit 1,
    with one line per side naming what is missing and how to record it, when a side has no recorded runs
    at the scales asked (the store lacks them; a table of dashes would hide that)."""
    settings = RunSettings.from_env(profiles_file=args.profiles)
    check_sides((args.left, args.right), settings.profiles())
    try:
        return _compare(settings.paths.metrics, args)
    except NoRecords as exc:
        for line in str(exc).splitlines():
            print(f"kura-perf compare: {line}", file=sys.stderr)
        return 1


def _compare(metrics: Path, args) -> int:
    if args.scale is None or len(args.scale) > 1 or args.scale == ["all"]:
        scales = None if args.scale in (None, ["all"]) else args.scale
        table = compare_scales(metrics, args.left, args.right, scales, host=args.host)
        if args.format in ("csv", "json"):  # the rows as data on stdout; what is missing on stderr
            for line in missing_lines(table):
                print(f"kura-perf compare: {line}", file=sys.stderr)
        if args.format == "csv":
            table.to_csv(sys.stdout, index=False)
        elif args.format == "json":
            print(table.to_json(orient="records"))
        else:
            truth = compare_truth_levels(metrics, args.left, args.right, table.attrs["host_fingerprint"], scales)
            print(render_side_by_side(table, truth))
        return 0
    args.scale = args.scale[0]
    table = compare_partitions(metrics, args.scale, args.left, args.right, host=args.host)
    if args.format == "csv":
        table.to_csv(sys.stdout, index=False)
    elif args.format == "json":
        print(table.to_json(orient="records"))
    else:
        print(f"L = {args.left}, R = {args.right}, scale {args.scale}, host {table.attrs['host_fingerprint']}")
        with pd.option_context("display.width", 250, "display.max_columns", 20):
            print(display_table(table).to_string())
        truth = compare_truth_levels(metrics, args.left, args.right, table.attrs["host_fingerprint"], [args.scale])
        if len(truth):
            print("quality at the topic level of each truth level (latest run):")
            print(render_truth_levels(truth))
    return 0


def add_commands(sub) -> None:
    """report, advise, compare: each reads the run records, so `main` cleans up after dead runs first
    (after `check_first`, the refusals that need no record: report's destination)."""
    report = sub.add_parser("report", help="build data/reports/index.html from the metrics store")
    report.add_argument("--out", help="another folder for the report")
    report.set_defaults(func=report_command, reaps=True, check_first=check_report_destination)

    adv = sub.add_parser("advise", help="recommend profiles for a scale from the recorded runs (Pareto front)")
    adv.add_argument("--scale", required=True, help="conversations: 10k, 100k, 1m, 2500, ...")
    adv.add_argument("--max-hours", type=float, help="longest acceptable pipeline wall time, hours")
    adv.add_argument("--max-cost", type=float, help="largest acceptable API cost, USD")
    adv.add_argument("--max-ram", type=float, help="largest acceptable peak memory, decimal GB (10^9 bytes)")
    adv.add_argument("--min-ari", type=float, help="lowest acceptable clustering ARI (synthetic ground truth)")
    adv.set_defaults(func=cmd_advise, reaps=True)

    compare = sub.add_parser("compare", help="two pipelines side by side, every scale (or one), with ratios")
    compare.add_argument("left", help="backend:profile, e.g. reference:reference-simulated")
    compare.add_argument("right", help="backend:profile, e.g. kura:kura-tier5")
    # Repeatable, one value each (`--scale 1k --scale 10k`): a greedy nargs="+" would swallow the two
    # positional pipelines of the documented `kura-perf compare --scale 1k L R`.
    compare.add_argument("--scale", action="append", help="100, 1k, 5k, 10k, 20k, 50k or 100k; repeat for several "
                                                          "(default: every scale either side ran)")
    compare.add_argument("--host", help="host fingerprint (default: the latest both sides were measured on)")
    compare.add_argument("--format", choices=["table", "csv", "json"], default="table")
    compare.add_argument("--profiles", help="an extra profiles TOML file (for sides that name your own profiles)")
    compare.set_defaults(func=cmd_compare, reaps=True)
