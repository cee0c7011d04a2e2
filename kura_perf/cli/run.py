"""`kura-perf run | sweep | matrix | stress | simulate-api`: the commands that run pipelines (or serve one)."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import pandas as pd

from kura_perf.cli import dagster_home
from kura_perf.cli.printing import print_frame, print_records
from kura_perf.errors import KuraPerfError
from kura_perf.experiments import matrix
from kura_perf.experiments.stress import LOST_DATA, SCENARIOS, Settings, run_stress
from kura_perf.experiments.sweep import sweep_stages
from kura_perf.files.outputs import has_stage
from kura_perf.meter.host_load import CONTENDED_SHARE
from kura_perf.pipeline.interrupts import own_interrupts
from kura_perf.pipeline.preflight import check_run_inputs
from kura_perf.pipeline.shapes import SHAPES, ShapeSettings
from kura_perf.proposal import CONCURRENCY_LEVELS
from kura_perf.scales import scale_count
from kura_perf.settings.run import RunSettings
from kura_perf.settings.third_party_env import single_blas_thread
from kura_perf.simulator.args import DESCRIPTION, add_arguments
from kura_perf.stages.base import STAGES
from kura_perf.store import query

STRESS_COLUMNS = ["scenario", "outcome", "exit_code", "pipelines", "records_expected", "records_found", "orphans",
                  "partial_outputs", "wrong_figures", "tracebacks", "cap_method", "wall_s", "peak_rss_mb"]


def cmd_run(args) -> int:
    """Every refusal before anything slow: the options, the profile and its data, the stages' inputs and
    the data root are checked (pipeline/preflight.py) before Dagster is imported or its instance opened,
    so a typo costs a fraction of a second and leaves nothing behind (no Dagster home, no record)."""
    scale_count(args.scale)
    if args.kura:
        return _run_with_kura(args)
    run_settings = RunSettings.from_env(profiles_file=str(Path(args.profiles).resolve()) if args.profiles else None,
                                        meter=False if args.no_meter else None, progress_bar=progress_bar_wanted(),
                                        api_log=str(Path(args.api_log).resolve()) if args.api_log else None,
                                        kura_spec=args.kura_spec_label)
    settings = _shape_settings(args)
    paths = run_settings.paths
    # Every input (stage names, profile values, data file, the stages' stored inputs, what the models
    # need, the data root) before Dagster starts.
    profile = check_run_inputs(run_settings, args.profile, stages=args.stages, scale_n=scale_count(args.scale),
                               inputs_in=paths.partition_dir(args.profile, args.scale) if args.stages else None)
    if settings is not None:
        settings.effective_profile(profile)  # refuse a bad step or batch size up front

    from kura_perf.defs.launch import (  # dagster: only once every input is known to be good
        run_partition,
        run_shape,
    )

    dagster_home.home(paths)
    dagster_home.clean_up_dead_runs(paths, check_runs=True)
    with own_interrupts(), dagster_home.instance(paths) as instance:
        if settings is not None:
            outcome = run_shape(settings.shape, args.scale, args.profile, settings=settings, instance=instance,
                                run_settings=run_settings)
        else:
            outcome = run_partition(args.scale, args.profile, stages=args.stages, instance=instance,
                                    run_settings=run_settings, run_id=args.run_id)
    print_records(outcome.records)
    if outcome.interrupted:
        print(f"\nkura-perf: run {outcome.run_id} interrupted; {outcome.failure}", file=sys.stderr)
        return 130
    if settings is not None and settings.shape == "custom" and outcome.success:
        redone = {r["stage"] for r in outcome.records}
        kept = [s for s in STAGES if s not in redone]
        if kept:
            print(f"reused from checkpoints in {settings.folder(paths, args.profile, args.scale)}: {', '.join(kept)}")
    if not outcome.success:
        print(f"\nrun {outcome.run_id} FAILED: {outcome.failure}", file=sys.stderr)
        if "BreakingPoint" in (outcome.failure or ""):
            # A stage stopped by a guard may leave a worker thread inside native code (torch, a C
            # loop); interpreter teardown would then abort (exit 134). Everything is recorded:
            # leave now with the documented exit code.
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(1)
        return 1
    print(f"\nrun {outcome.run_id} succeeded; records in {paths.metrics}")
    return 0


def _run_with_kura(args) -> int:
    """`run --kura SPEC`: the spec's environment found or built (a spec pip cannot install, or whose Kura
    does not import, is refused here, exit 2, before any stage), then the same `run` in it."""
    from kura_perf.experiments import versions

    if args.shape or args.no_meter:
        raise KuraPerfError("--kura runs the plain stages: without --shape and --no-meter")
    run_settings = RunSettings.from_env(profiles_file=str(Path(args.profiles).resolve()) if args.profiles else None)
    profile = check_run_inputs(run_settings, args.profile, stages=args.stages, scale_n=scale_count(args.scale),
                               inputs_in=run_settings.paths.partition_dir(args.profile, args.scale) if args.stages
                               else None, kura_in_spec_env=True)
    if profile.backend != "kura":
        raise KuraPerfError(f"--kura: profile '{profile.name}' runs the {profile.backend} backend, not Kura; "
                            f"use a kura profile (e.g. kura-tier5)")
    constraints = Path(args.constraints).resolve() if args.constraints else versions.DEFAULT_CONSTRAINTS
    prepared = versions.prepare([args.kura], run_settings.paths.root, constraints)[0]
    _, code = versions.run_in_env(prepared, args.scale, args.profile, args.stages, run_settings.profiles_file,
                                  run_id=args.run_id, quiet=False)
    return code


def progress_bar_wanted(stream=None) -> bool:
    """Whether a person watches the run: stderr (where progress goes) is a terminal. Decided here, at
    the edge, and handed down as RunSettings.progress_bar: an updating bar per stage for a person, the
    plain progress log lines for CI, pipes and files."""
    stream = sys.stderr if stream is None else stream
    isatty = getattr(stream, "isatty", None)
    try:
        return bool(isatty is not None and isatty())
    except ValueError:  # a closed stream
        return False


def _shape_settings(args):
    """The shape options of `kura-perf run`, validated; None for a plain run of the stages."""
    options = {"--step": args.step, "--after": args.after, "--stream-batch-size": args.stream_batch_size}
    if args.shape is None:
        given = [name for name, value in options.items() if value is not None]
        if given:
            raise KuraPerfError(f"{', '.join(given)}: needs --shape custom (--step, --after) or --shape streaming (--stream-batch-size)")
        return None
    if args.stages:
        raise KuraPerfError(f"--stages and --shape exclude each other: the shape '{args.shape}' decides the stages")
    if args.shape != "custom" and (args.step or args.after):
        raise KuraPerfError("--step and --after apply to --shape custom")
    if args.shape != "streaming" and args.stream_batch_size is not None:
        raise KuraPerfError("--stream-batch-size applies to --shape streaming")
    return ShapeSettings(args.shape, args.step, args.after, args.stream_batch_size)


def cmd_sweep(args) -> int:
    from kura_perf.defs.launch import run_partition  # dagster: start-up time

    run_settings = RunSettings.from_env(progress_bar=progress_bar_wanted())
    profile = check_run_inputs(run_settings, args.profile)  # before Dagster starts
    if not sweep_stages(profile):
        raise KuraPerfError(f"profile '{args.profile}' has no API-backed models to sweep; try simulated-openai")
    paths = run_settings.paths
    folder = paths.partition_dir(args.profile, args.scale)
    missing = [s for s in ("conversations", "summaries") if not has_stage(folder, s)]
    with own_interrupts(), dagster_home.instance(paths) as instance:
        outcome = run_partition(args.scale, args.profile, stages=missing, instance=instance, run_settings=run_settings,
                                extra_assets=["api_concurrency_sweep"],
                                asset_config={"api_concurrency_sweep": {"levels": args.levels, "items": args.items}})
    if outcome.interrupted:
        print(f"kura-perf: sweep run {outcome.run_id} interrupted; {outcome.failure}", file=sys.stderr)
        return 130
    rows = query(paths.metrics, "SELECT stage, concurrency, items, round(items_per_min) items_per_min, "
                 "round(latency_p50_ms) p50_ms, round(latency_p95_ms) p95_ms, round(latency_p99_ms) p99_ms, "
                 "api_calls, api_429s, round(share_429, 3) share_429, binding_limit, round(limit_share, 3) limit_share, "
                 "api_retries, api_errors, tokens_in, "
                 "round(cost_per_1k_conversations, 4) usd_per_1k, status FROM sweep_results WHERE run_id = ? "
                 "ORDER BY stage, concurrency", [outcome.run_id])
    print_frame(rows, empty="(no sweep rows)")
    if not outcome.success:
        print(f"\nsweep run {outcome.run_id} FAILED: {outcome.failure}", file=sys.stderr)
        return 1
    return 0


def cmd_matrix(args) -> int:
    profiles_file = str(Path(args.profiles_file).resolve()) if args.profiles_file else None
    run_settings = RunSettings.from_env(profiles_file=profiles_file)
    text = matrix.run_matrix(run_settings, list(args.profiles), list(args.scales), table_only=args.table_only,
                             echo=lambda line: print(line, flush=True), wait_quiet=args.wait_quiet,
                             quiet_timeout_s=args.quiet_timeout_s)
    print(text)
    print(f"\n(written to {run_settings.paths.root / 'matrix.md'}; side by side: "
          "kura-perf compare reference:offline kura:kura-tier5)")
    return 0


def cmd_stress(args) -> int:
    scale_count(args.scale)
    run_settings = RunSettings.from_env()
    settings = Settings(scale=args.scale, stages=args.stages or Settings().stages, memory_mb=args.memory_mb,
                        disk_kb=args.disk_kb, outage_s=args.outage_s, speed_factor=args.speed_factor, storm_rpm=args.storm_rpm,
                        storm_429_rate=args.storm_429_rate, pipelines=args.pipelines, timeout_s=args.timeout_s,
                        keep_homes=args.keep_homes, profiles_file=run_settings.profiles_file)
    paths = run_settings.paths
    rows = run_stress(paths, args.scenarios, settings)
    df = pd.DataFrame(rows)
    print_frame(df[STRESS_COLUMNS], empty=None, width=220, max_columns=30, float_format="{:.1f}".format)
    for row in rows:
        print(f"\n{row['scenario']}: {row['message']}")
    print(f"\nstress run {rows[0]['run_id'] if rows else '-'}: {len(rows)} scenario(s) recorded in "
          f"{paths.metrics / 'stress_results'}; scratch homes under {paths.root / 'stress'}")
    return 1 if any(r["outcome"] == LOST_DATA for r in rows) else 0


def cmd_simulate_api(args) -> int:
    single_blas_thread()  # before the server's numpy import (as `python -m kura_perf.simulator` does)
    from kura_perf.simulator.cli import run  # after single_blas_thread: it imports numpy

    return run(args)


def add_commands(sub) -> None:
    """run, sweep, matrix, stress, simulate-api. `reaps`: whether `main` cleans up after dead runs first
    (`run` does it itself, with the Dagster runs; the simulator touches no record)."""
    run = sub.add_parser("run", help="materialize the stage assets of one partition, in-process")
    run.add_argument("--scale", default="100", help="100, 1k, 5k, 10k, 20k, 50k or 100k")
    run.add_argument("--profile", default="offline")
    run.add_argument("--stages", nargs="+", help="only these stages (their inputs must exist)")
    run.add_argument("--profiles", help="an extra profiles TOML file")
    run.add_argument("--no-meter", action="store_true", help="disable the memory sampler (to measure its cost)")
    run.add_argument("--api-log", metavar="FILE",
                     help="append one JSON line per API request (model, kind, tokens, latency, status; never "
                          "content nor key) to FILE, for `kura-perf calibrate` (default: $KURA_PERF_API_LOG)")
    run.add_argument("--shape", choices=list(SHAPES),
                     help="run a pipeline shape's job (minimal, full, custom, streaming) instead of --stages")
    run.add_argument("--step", help="custom shape: the step to insert, 'module:function' (default: the profile's "
                                    "custom_step, else kura_perf.pipeline.custom_steps:redact_pii)")
    run.add_argument("--after", help="custom shape: the stage the step follows (default: summaries)")
    run.add_argument("--stream-batch-size", type=int, help="streaming shape: conversations per batch (default 256)")
    run.add_argument("--kura", metavar="SPEC", help="the Kura to run, in its own cached environment: kura==0.5.2, "
                                                    "path:/src/kura or git:/src/kura@<sha> (kura backend profiles)")
    run.add_argument("--constraints", help="--kura: the pip constraints its environment is built with (default: "
                                           "kura_perf's constraints.txt)")
    # Set by --kura for the run it starts in the spec's environment: the spec as given, and the run id.
    run.add_argument("--kura-spec-label", help=argparse.SUPPRESS)
    run.add_argument("--run-id", help=argparse.SUPPRESS)
    run.set_defaults(func=cmd_run, reaps=False)

    sweep = sub.add_parser("sweep", help="API stages at several concurrency levels (API profiles)")
    sweep.add_argument("--scale", default="1k")
    sweep.add_argument("--profile", default="simulated-openai")
    sweep.add_argument("--levels", type=int, nargs="+", default=list(CONCURRENCY_LEVELS))
    sweep.add_argument("--items", type=int, default=200, help="conversations per level")
    sweep.set_defaults(func=cmd_sweep, reaps=True)

    matrix_ = sub.add_parser("matrix", help="run every profile × scale partition (each its own process), "
                                            "then print the filled §1.2 matrix")
    matrix_.add_argument("--scales", nargs="+", default=list(matrix.DEFAULT_SCALES))
    matrix_.add_argument("--profiles", nargs="+", default=list(matrix.DEFAULT_PROFILES), help="profile names")
    matrix_.add_argument("--profiles-file", help="an extra profiles TOML file (e.g. with raised stage limits)")
    matrix_.add_argument("--table-only", action="store_true", help="print the table from the store, run nothing")
    matrix_.add_argument("--wait-quiet", action="store_true",
                         help="before each partition, wait until other processes take at most "
                              f"{CONTENDED_SHARE:.0%}% of the box (a 3 s /proc/stat sample; printed while waiting)")
    matrix_.add_argument("--quiet-timeout-s", type=float, default=600.0,
                         help="--wait-quiet: run anyway after this long (the records then say contended)")
    matrix_.set_defaults(func=cmd_matrix, reaps=True)

    d = Settings()
    stress = sub.add_parser("stress", help="stress scenarios (memory cap, disk full, API outage, 429 storm, "
                            "concurrent pipelines) recorded in stress_results",
                            description="Run real pipelines under real faults, each in a scratch home, and record "
                            "whether they survived, failed cleanly or lost data. Exit 1 if any lost data.")
    stress.add_argument("--scenarios", nargs="+", choices=list(SCENARIOS), help="default: all")
    stress.add_argument("--scale", default=d.scale)
    stress.add_argument("--stages", nargs="+", help=f"stages each pipeline runs (default: {' '.join(d.stages)})")
    stress.add_argument("--memory-mb", type=int, default=d.memory_mb, help="memory_exhaustion: the cap (default: 160 MB resident under a cgroup, 1024 MB address space under "
                        "RLIMIT_AS)")
    stress.add_argument("--disk-kb", type=int, default=d.disk_kb, help="disk_full: the filesystem's size")
    stress.add_argument("--outage-s", type=float, default=d.outage_s, help="network_interruption: outage length")
    stress.add_argument("--speed-factor", type=float, default=d.speed_factor,
                        help="API scenarios: the simulator this many times faster than the models' published "
                             "latency (fault handling, not a time prediction; records carry it; 1 = real speed)")
    stress.add_argument("--storm-rpm", type=int, default=d.storm_rpm, help="rate_limit_storm: requests per minute")
    stress.add_argument("--storm-429-rate", type=float, default=d.storm_429_rate,
                        help="rate_limit_storm: share of forced 429s")
    stress.add_argument("--pipelines", type=int, default=d.pipelines, help="concurrent_pipelines: 2..8")
    stress.add_argument("--timeout-s", type=float, default=d.timeout_s, help="per scenario")
    stress.add_argument("--keep-homes", action="store_true", help="keep each scenario's storage and Dagster home")
    stress.set_defaults(func=cmd_stress, reaps=True)

    sim = sub.add_parser("simulate-api", help="serve the OpenAI-compatible simulator (--help lists every setting)",
                         description=DESCRIPTION)
    add_arguments(sim)  # the simulator's own option definitions, shared with `python -m kura_perf.simulator`
    sim.set_defaults(func=cmd_simulate_api, reaps=False)
