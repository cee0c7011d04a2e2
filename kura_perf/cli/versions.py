"""`kura-perf versions`: Kura releases, checkouts and commits side by side on one partition, or the commit
that made one worse (`--bisect GOOD BAD --repo PATH`). kura_perf/experiments/versions.py does the work."""

from __future__ import annotations

import sys
from pathlib import Path

from kura_perf.cli.printing import print_frame
from kura_perf.errors import KuraPerfError
from kura_perf.scales import scale_count
from kura_perf.settings.run import RunSettings


def _settings(args) -> RunSettings:
    return RunSettings.from_env(profiles_file=str(Path(args.profiles).resolve()) if args.profiles else None)


def _check(args, settings: RunSettings) -> None:
    from kura_perf.pipeline.preflight import check_run_inputs

    scale_count(args.scale)
    if args.repeats < 1:
        raise KuraPerfError(f"--repeats {args.repeats}: at least 1")
    profile = check_run_inputs(settings, args.profile, stages=args.stages, scale_n=scale_count(args.scale),
                               inputs_in=None, kura_in_spec_env=True)
    if profile.backend != "kura":
        raise KuraPerfError(f"versions: profile '{profile.name}' runs the {profile.backend} backend, not Kura; "
                            f"use a kura profile (e.g. kura-tier5)")


def cmd_versions(args) -> int:
    from kura_perf.experiments import versions

    settings = _settings(args)
    _check(args, settings)
    constraints = Path(args.constraints).resolve() if args.constraints else versions.DEFAULT_CONSTRAINTS
    if args.bisect:
        if not args.repo:
            raise KuraPerfError("--bisect GOOD BAD needs --repo PATH (a local git repository of Kura)")
        if args.specs:
            raise KuraPerfError("--bisect takes no specs: it builds the commits of --repo")
        result = versions.bisect(Path(args.repo), args.bisect[0], args.bisect[1], settings, args.scale, args.profile,
                                 metric=args.metric, stage=args.stage, stages=args.stages,
                                 profiles_file=settings.profiles_file, constraints=constraints)
        print(f"{len(result.probes)} builds for {result.candidates} commits after {args.bisect[0]}:")
        for probe in result.probes:
            print(f"  {probe.commit[:12]}  {result.metric} {probe.value:g}  {'bad' if probe.bad else 'good'}  "
                  f"run {probe.run_id}")
        print(f"first bad commit: {result.first_bad} (last good: {result.last_good})")
        return 0
    if len(args.specs) < 2:
        raise KuraPerfError("versions: give two or more Kura specs (the first is the baseline), or --bisect")
    prepared = versions.prepare(args.specs, settings.paths.root, constraints)
    runs = versions.run_specs(prepared, args.scale, args.profile, args.stages, settings.profiles_file, args.repeats)
    table = versions.side_by_side(settings, runs)
    print(f"Kura versions at {args.scale}, profile {args.profile} (ratios to {args.specs[0]}; "
          f"{args.repeats} run(s) each)")
    print_frame(table, float_format=lambda v: f"{v:.3g}", width=250, max_columns=40)
    failed = [f"{run.text}: {'; '.join(run.failures)}" for run in runs if run.failures]
    for line in failed:
        print(f"FAILED {line}", file=sys.stderr)
    worse = versions.regressions(table)
    if worse and args.fail_on_regression:
        print("REGRESSION against " + args.specs[0] + ":\n  " + "\n  ".join(worse), file=sys.stderr)
        return 1
    return 1 if failed else 0


def add_commands(sub) -> None:
    parser = sub.add_parser("versions", help="Kura specs side by side on one partition, each in its own "
                                             "environment; or --bisect a regression to one commit")
    parser.add_argument("specs", nargs="*", help="kura==0.5.2, path:/src/kura, git:/src/kura@<sha>; the first is "
                                                 "the baseline")
    parser.add_argument("--scale", default="1k")
    parser.add_argument("--profile", default="kura-tier5")
    parser.add_argument("--stages", nargs="+", help="only these stages (default: all)")
    parser.add_argument("--profiles", help="an extra profiles TOML file")
    parser.add_argument("--repeats", type=int, default=1, help="runs per spec (the verdicts' noise band)")
    parser.add_argument("--constraints", help="pip constraints for the environments (default: constraints.txt)")
    parser.add_argument("--fail-on-regression", action="store_true",
                        help="exit 1 when a later spec is slower, larger or makes more API calls than the first")
    parser.add_argument("--bisect", nargs=2, metavar=("GOOD", "BAD"), help="find the first commit between GOOD and "
                                                                           "BAD of --repo that is worse")
    parser.add_argument("--repo", help="--bisect: the local git repository of Kura")
    parser.add_argument("--metric", default="api_calls", help="--bisect: api_calls (default), tokens, peak_rss_mb, "
                                                              "wall_s or cpu_s")
    parser.add_argument("--stage", help="--bisect: the stage whose figure is compared (default: the run's total)")
    parser.set_defaults(func=cmd_versions, reaps=True)
