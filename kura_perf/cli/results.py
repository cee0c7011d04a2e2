"""`kura-perf results add | publish`: records into the repo's results/, and the README's Measured section
(plus the published report) regenerated from them (kura_perf/results/)."""

from __future__ import annotations

from pathlib import Path

from kura_perf.results.publish import publish, repo_readme
from kura_perf.results.records import add_runs, repo_results_dir, store_records
from kura_perf.settings.run import RunSettings


def cmd_results_add(args) -> int:
    if args.probe:
        from kura_perf.results.probes import add_probes

        for path in add_probes([Path(p) for p in args.probe], Path(args.results), allow_contended=args.allow_contended):
            print(f"probe -> {path}")
        print("now `kura-perf publish` to regenerate the README's Measured section, and commit both")
        return 0
    metrics = Path(args.store) if args.store else RunSettings.from_env().paths.metrics
    runs = store_records(metrics, list(args.run_id or []), latest=args.latest)
    written = add_runs(runs, Path(args.results), allow_contended=args.allow_contended)
    for run_id, path in zip(runs, written):
        print(f"run {run_id}: {len(runs[run_id])} stage records -> {path}")
    print("now `kura-perf publish` to regenerate the README's Measured section, and commit both")
    return 0


def cmd_publish(args) -> int:
    report_out = Path(args.report) if args.report else RunSettings.from_env().paths.root / "published-report"
    published = publish(Path(args.results), Path(args.readme), None if args.no_report else report_out)
    print(published.section)
    print(f"\n{args.readme}: Measured section regenerated from {published.records} records in {published.files} "
          f"files of {args.results} ({published.excluded_contended} excluded as contended)"
          + ("" if args.no_report else f"; published report in {report_out}"))
    return 0


def add_commands(sub) -> None:
    results = sub.add_parser("results", help="the records behind the published figures (the repo's results/)")
    rsub = results.add_subparsers(dest="results_command", required=True)
    add = rsub.add_parser("add", help="copy a run's stage records from a metrics store into results/ (one file per "
                                      "run; refused without host or code version, or when contended)")
    which = add.add_mutually_exclusive_group(required=True)
    which.add_argument("--run-id", nargs="+", help="the run(s) to add")
    which.add_argument("--latest", action="store_true", help="the store's most recent run")
    which.add_argument("--probe", nargs="+", help="`kura-perf kura-probe` record file(s) (into results/probes/)")
    add.add_argument("--store", help="the metrics folder (default: <KURA_PERF_HOME>/metrics)")
    add.add_argument("--results", default=str(repo_results_dir()), help="default: the checkout's results/")
    add.add_argument("--allow-contended", action="store_true",
                     help="add records measured on a busy box too (publish still leaves them out of its tables)")
    add.set_defaults(func=cmd_results_add, reaps=True)

    pub = sub.add_parser("publish", help="regenerate README.md's Measured section and the published report from "
                                         "results/")
    pub.add_argument("--results", default=str(repo_results_dir()), help="default: the checkout's results/")
    pub.add_argument("--readme", default=str(repo_readme()), help="default: the checkout's README.md")
    pub.add_argument("--report", help="folder of the published HTML report (default: <KURA_PERF_HOME>/published-report)")
    pub.add_argument("--no-report", action="store_true", help="only the README section")
    pub.set_defaults(func=cmd_publish, reaps=False)
