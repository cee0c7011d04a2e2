"""`kura-perf`: run partitions, list profiles, query the store. Errors print a message, not a traceback."""

from __future__ import annotations

import argparse
import sys

from kura_perf.cli import (
    calibrate,
    checks,
    cluster,
    dagster_home,
    kura_probe,
    profiles,
    proxy,
    report,
    results,
    run,
    store,
    usability,
    versions,
)
from kura_perf.cli.dagster_home import DAGSTER_YAML  # re-exported for the tests
from kura_perf.console import configure_logging, ignore_cluster_library_mismatch
from kura_perf.errors import KuraPerfError
from kura_perf.meter.failures import is_memory_exhaustion, memory_reason

__all__ = ["DAGSTER_YAML", "build_parser", "main"]

# One module per command group; each registers its subcommands, their handlers (`func`) and whether
# `main` cleans up after dead runs before them (`reaps`).
COMMAND_GROUPS = (run, profiles, store, report, results, dagster_home, checks, usability, cluster, calibrate, proxy,
                  versions, kura_probe)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="kura-perf", description=__doc__)
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True)
    for group in COMMAND_GROUPS:
        group.add_commands(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    # Before any command imports Dagster's cluster libraries (kura_perf/console.py says why).
    ignore_cluster_library_mismatch()
    args = build_parser().parse_args(argv)
    configure_logging(args.verbose)
    try:
        # A command's refusals that need no record come first (`check_first`: report's destination), so a
        # wrong command line is refused before anything is read, written or imported for the work.
        if (check_first := getattr(args, "check_first", None)) is not None:
            check_first(args)
        # Commands that read or write run records first turn the stages of dead processes into `died`
        # records (a command that needs the Dagster runs too, `run` and `db`, does it itself).
        if getattr(args, "reaps", False):
            dagster_home.clean_up_dead_runs()
        return args.func(args)
    except KuraPerfError as exc:
        print(f"kura-perf: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("kura-perf: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:
        if not is_memory_exhaustion(exc):
            raise
        print(f"kura-perf: error: {memory_reason(exc)}; any stage it stopped is recorded as a breaking point",
              file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
