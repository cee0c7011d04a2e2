"""`kura-perf report`: build the report for the configured data root and say where it is.
The lead wires the subcommand in kura_perf/cli/main.py; it calls `report_command(args)` (args.out optional)."""

from __future__ import annotations

from pathlib import Path


def report_command(args) -> int:
    from kura_perf.settings.paths import Paths
    from kura_perf.report import build_report

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
