"""`kura-perf`: run partitions, list profiles, query the store. Errors print a message, not a traceback."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

from kura_perf.errors import KuraPerfError
from kura_perf.proposal import CONCURRENCY_LEVELS

STAGE_COLUMNS = ["stage", "status", "items_in", "items_out", "skipped_records", "wall_s", "cpu_s", "peak_rss_mb",
                 "items_per_s", "model_items_per_s", "bytes_written", "n_clusters", "api_calls", "api_429s", "cost_usd"]


def _dagster_home(paths) -> Path:
    """A persistent Dagster instance beside the data ($DAGSTER_HOME, else <data root>/dagster_home), so
    CLI runs show up in the UI too. Created and first initialised under a file lock: concurrent first
    runs would otherwise race in its migrations. Runs open it explicitly (`_instance`)."""
    from kura_perf.defs.instance import default_home, prepare_dagster_home

    return prepare_dagster_home(default_home(paths.root))


def _instance(paths):
    """The CLI's Dagster instance (a context manager: closed when the command is done)."""
    from kura_perf.defs.instance import open_instance

    return open_instance(_dagster_home(paths))


def _settings(**overrides):
    """This command's RunSettings: the environment's, with what the command line says on top."""
    from kura_perf.settings import RunSettings

    return RunSettings.from_env(**overrides)


from kura_perf.defs.instance import DAGSTER_YAML  # noqa: E402 - re-exported for the tests


def cmd_run(args) -> int:
    from kura_perf.defs.launch import run_partition
    from kura_perf.scales import scale_count
    from kura_perf.stages.base import STAGES

    scale_count(args.scale)
    from kura_perf.pipeline.preflight import check_run_inputs

    run_settings = _settings(profiles_file=str(Path(args.profiles).resolve()) if args.profiles else None,
                             meter=False if args.no_meter else None)
    settings = _shape_settings(args)
    # Every input (data root, profile values, data file, what the models need) before Dagster starts.
    profile = check_run_inputs(run_settings, args.profile, stages=args.stages, scale_n=scale_count(args.scale))
    paths = run_settings.paths
    _dagster_home(paths)
    _clean_up_dead_runs(paths, check_runs=True)
    from kura_perf.pipeline.interrupts import own_interrupts

    with own_interrupts(), _instance(paths) as instance:
        if settings is not None:
            from kura_perf.defs.launch import run_shape

            settings.effective_profile(profile)  # refuse a bad step or batch size up front
            outcome = run_shape(settings.shape, args.scale, args.profile, settings=settings, instance=instance,
                                run_settings=run_settings)
        else:
            outcome = run_partition(args.scale, args.profile, stages=args.stages, instance=instance,
                                    run_settings=run_settings)
    _print_records(outcome.records)
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


def _shape_settings(args):
    """The shape options of `kura-perf run`, validated; None for a plain run of the stages."""
    from kura_perf.pipeline.shapes import ShapeSettings

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
    from kura_perf.defs.launch import run_partition
    from kura_perf.files.outputs import has_stage
    from kura_perf.store import query
    from kura_perf.experiments.sweep import sweep_stages

    from kura_perf.pipeline.preflight import check_run_inputs

    run_settings = _settings()
    profile = check_run_inputs(run_settings, args.profile)  # before Dagster starts
    if not sweep_stages(profile):
        raise KuraPerfError(f"profile '{args.profile}' has no API-backed models to sweep; try simulated-openai")
    paths = run_settings.paths
    folder = paths.partition_dir(args.profile, args.scale)
    missing = [s for s in ("conversations", "summaries") if not has_stage(folder, s)]
    from kura_perf.pipeline.interrupts import own_interrupts

    with own_interrupts(), _instance(paths) as instance:
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
    print(rows.to_string(index=False) if len(rows) else "(no sweep rows)")
    if not outcome.success:
        print(f"\nsweep run {outcome.run_id} FAILED: {outcome.failure}", file=sys.stderr)
        return 1
    return 0


def _print_records(rows) -> None:
    """The run's stage records (store rows, as a RunOutcome carries them) as a table, plus skip notes."""
    import pandas as pd

    from kura_perf.store.record import StageRecord

    if rows is None:
        print("(stage records not shown: out of memory reading them back; they are in the store: kura-perf sql)")
        return
    if len(rows) == 0:
        print("(no stage records)")
        return
    records = [StageRecord.from_row(row) for row in rows]
    df = pd.DataFrame([record.as_row() for record in records])
    df["cpu_s"] = df["cpu_user_s"].fillna(0) + df["cpu_sys_s"].fillna(0)
    cols = [c for c in STAGE_COLUMNS if c in df and df[c].notna().any()]
    if "skipped_records" in cols and not (df["skipped_records"].fillna(0) > 0).any():
        cols.remove("skipped_records")  # only worth a column when a lenient load skipped something
    with pd.option_context("display.width", 200, "display.max_columns", 30, "display.float_format", "{:.3f}".format):
        print(df[cols].to_string(index=False))
    for line in skip_notes(records):
        print(line)


def skip_notes(records) -> list[str]:
    """One line per stage that skipped bad input records (a lenient profile), with the first problems:
    a lenient run must say what it left out, not only count it in the store. records: StageRecords."""
    import json

    notes = []
    for record in records:
        skipped = record.skipped_records
        if not skipped:  # None or 0 (a stored NaN is None in a StageRecord)
            continue
        try:
            problems = json.loads(record.extra or "{}").get("problems") or []
        except (TypeError, ValueError):
            problems = []
        notes.append(f"{record.stage}: skipped {int(skipped)} invalid input record(s) (lenient profile)")
        notes += [f"  - {problem}" for problem in problems[:3]]
        if len(problems) > 3 or skipped > len(problems[:3]):
            notes.append(f"  (first {min(len(problems), 3)} shown; all counted in stage_runs.skipped_records)")
    return notes


def cmd_profiles(args) -> int:
    for name, profile in _settings(profiles_file=args.profiles).profiles().items():
        print(f"{name:20s} {profile.backend:9s} {profile.clustering:13s} {profile.embedding_model:28s} "
              f"{profile.description}")
    return 0


def _sql_text(args) -> str:
    """The query of `kura-perf sql`: the argument, or --file PATH, or standard input ('-' for either)."""
    if args.query is not None and args.file is not None:
        raise KuraPerfError("sql: give the query as an argument or with --file, not both")
    source = args.file if args.file is not None else args.query
    if source is None:
        raise KuraPerfError("sql: no query (give it as an argument, --file PATH, or '-' to read standard input)")
    if source == "-":
        text = sys.stdin.read()
    elif args.file is not None:
        try:
            text = Path(args.file).read_text()
        except (OSError, UnicodeDecodeError) as exc:
            raise KuraPerfError(f"sql: cannot read the query file {args.file}: {exc}") from None
    else:
        text = source
    if not text.strip():
        raise KuraPerfError("sql: the query is empty")
    return text


def cmd_sql(args) -> int:
    import pandas as pd

    from kura_perf.settings.paths import Paths
    from kura_perf.store import query

    sql = _sql_text(args)
    try:
        df = query(Paths.from_env().metrics, sql, read_only=True)
    except KuraPerfError:
        raise  # a refused write: its own one line
    except Exception as exc:  # duckdb errors are the user's SQL: show them plainly
        message = str(exc)
        if "Traceback (most recent call last)" in message:  # an error raised inside the store's file system
            message = message.splitlines()[0]
        raise KuraPerfError(f"query failed: {message}") from None
    if args.format == "csv":
        df.to_csv(sys.stdout, index=False)
    elif args.format == "json":
        print(df.to_json(orient="records", date_format="iso"))
    else:
        with pd.option_context("display.width", 200, "display.max_columns", 40, "display.max_rows", 500):
            print(df.to_string(index=False) if len(df) else "(no rows)")
    return 0


def cmd_db(args) -> int:
    from kura_perf.settings.paths import Paths
    from kura_perf.store import refresh_database
    from kura_perf.store.leftovers import commit_leftovers
    from kura_perf.store.liveness import live_runs
    from kura_perf.store.quarantine import QUARANTINE
    from kura_perf.store.validation import screen_record_files

    paths = Paths.from_env()
    marked = _clean_up_dead_runs(paths, check_runs=True)
    alive = live_runs(paths.running)
    # An old data root's metrics_pending/ (records of earlier versions' hand-off): committed once, here.
    recovered = commit_leftovers(paths.root, paths.metrics, skip=lambda run_id: run_id in alive)
    screened = screen_record_files(paths.metrics)
    ok = refresh_database(paths.metrics, paths.database)
    notes = [f"recovered {recovered} stranded record(s)"]
    if marked:
        notes.append(f"marked {len(marked)} Dagster run(s) of dead processes failed")
    if screened.unreadable:
        notes.append(f"quarantined {len(screened.unreadable)} unreadable record file(s) into {paths.root / QUARANTINE}")
    if screened.mismatched:
        notes.append(f"quarantined {len(screened.mismatched)} record file(s) not matching the schema into "
                     f"{paths.root / QUARANTINE}")
    busy = f"NOT refreshed: {paths.database} is held by another process (a DuckDB shell?); no data lost"
    print(f"{'; '.join(notes)}; " + (f"views refreshed in {paths.database}" if ok else busy))
    return 0 if ok else 1


def cmd_advise(args) -> int:
    import pandas as pd

    from kura_perf.report.advisor import Limits, NothingFits, advise, parse_scale
    from kura_perf.settings.paths import Paths
    from kura_perf.report import fmt

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
    with pd.option_context("display.width", 250, "display.max_colwidth", 120, "display.max_columns", 10):
        print(advice.table().to_string(index=False))
    print(f"\n{advice.quality_note()}")
    if not advice.recommended:
        print(f"\nkura-perf advise: {advice.refusal()}", file=sys.stderr)
        return 1
    print(f"\nrecommended: {', '.join(c.name for c in advice.recommended)}")
    return 0


def _report(args) -> int:
    from kura_perf.report.cli import report_command

    return report_command(args)


STRESS_COLUMNS = ["scenario", "outcome", "exit_code", "pipelines", "records_expected", "records_found", "orphans",
                  "partial_outputs", "wrong_figures", "tracebacks", "cap_method", "wall_s", "peak_rss_mb"]


def cmd_stress(args) -> int:
    import pandas as pd

    from kura_perf.settings.paths import Paths
    from kura_perf.scales import scale_count
    from kura_perf.experiments.stress import LOST_DATA, Settings, run_stress

    scale_count(args.scale)
    settings = Settings(scale=args.scale, stages=args.stages or Settings().stages, memory_mb=args.memory_mb,
                        disk_kb=args.disk_kb, outage_s=args.outage_s, storm_rpm=args.storm_rpm,
                        storm_429_rate=args.storm_429_rate, pipelines=args.pipelines, timeout_s=args.timeout_s,
                        keep_homes=args.keep_homes)
    paths = Paths.from_env()
    rows = run_stress(paths, args.scenarios, settings)
    df = pd.DataFrame(rows)
    with pd.option_context("display.width", 220, "display.max_columns", 30, "display.float_format", "{:.1f}".format):
        print(df[STRESS_COLUMNS].to_string(index=False))
    for row in rows:
        print(f"\n{row['scenario']}: {row['message']}")
    print(f"\nstress run {rows[0]['run_id'] if rows else '-'}: {len(rows)} scenario(s) recorded in "
          f"{paths.metrics / 'stress_results'}; scratch homes under {paths.root / 'stress'}")
    return 1 if any(r["outcome"] == LOST_DATA for r in rows) else 0


def cmd_dagster_home(args) -> int:
    from kura_perf.settings.paths import Paths

    print(_dagster_home(Paths.from_env()))
    return 0


def cmd_simulate_api(args) -> int:
    from kura_perf.settings.third_party_env import single_blas_thread

    single_blas_thread()  # before the server's numpy import (as `python -m kura_perf.simulator` does)
    from kura_perf.simulator.cli import run

    return run(args)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="kura-perf", description=__doc__)
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="materialize the stage assets of one partition, in-process")
    run.add_argument("--scale", default="100", help="100, 1k, 5k, 10k, 20k, 50k or 100k")
    run.add_argument("--profile", default="offline")
    run.add_argument("--stages", nargs="+", help="only these stages (their inputs must exist)")
    run.add_argument("--profiles", help="an extra profiles TOML file")
    run.add_argument("--no-meter", action="store_true", help="disable the memory sampler (to measure its cost)")
    from kura_perf.pipeline.shapes import SHAPES

    run.add_argument("--shape", choices=list(SHAPES),
                     help="run a pipeline shape's job (minimal, full, custom, streaming) instead of --stages")
    run.add_argument("--step", help="custom shape: the step to insert, 'module:function' (default: the profile's "
                                    "custom_step, else kura_perf.pipeline.custom_steps:redact_pii)")
    run.add_argument("--after", help="custom shape: the stage the step follows (default: summaries)")
    run.add_argument("--stream-batch-size", type=int, help="streaming shape: conversations per batch (default 256)")
    run.set_defaults(func=cmd_run)

    profiles = sub.add_parser("profiles", help="list the profiles")
    profiles.add_argument("--profiles", help="an extra profiles TOML file")
    profiles.set_defaults(func=cmd_profiles)

    sql = sub.add_parser(
        "sql", help="run a read-only DuckDB query over the metrics store",
        description="Run a DuckDB query over the metrics store's views (stage_runs, latest_stage_runs, scaling, ...). "
                    "Read-only: only queries run (SELECT, DESCRIBE, SHOW, SUMMARIZE, EXPLAIN); COPY, ATTACH, "
                    "CREATE, INSERT, INSTALL/LOAD, SET and the like are refused (exit 2), and the connection "
                    "itself can write no file and reach nothing outside the store. Record files can be read "
                    "directly as kurastore://<table>/date=*/*.parquet. To write results elsewhere, "
                    "`kura-perf db` and open data/metrics.duckdb in your own DuckDB shell.")
    sql.add_argument("query", nargs="?", help="the SQL; '-' reads it from standard input")
    sql.add_argument("--file", metavar="PATH", help="read the SQL from this file ('-': standard input)")
    sql.add_argument("--format", choices=["table", "csv", "json"], default="table")
    sql.set_defaults(func=cmd_sql)

    sweep = sub.add_parser("sweep", help="API stages at several concurrency levels (API profiles)")
    sweep.add_argument("--scale", default="1k")
    sweep.add_argument("--profile", default="simulated-openai")
    sweep.add_argument("--levels", type=int, nargs="+", default=list(CONCURRENCY_LEVELS))
    sweep.add_argument("--items", type=int, default=200, help="conversations per level")
    sweep.set_defaults(func=cmd_sweep)

    report = sub.add_parser("report", help="build data/reports/index.html from the metrics store")
    report.add_argument("--out", help="another folder for the report")
    report.set_defaults(func=_report)

    adv = sub.add_parser("advise", help="recommend profiles for a scale from the recorded runs (Pareto front)")
    adv.add_argument("--scale", required=True, help="conversations: 10k, 100k, 1m, 2500, ...")
    adv.add_argument("--max-hours", type=float, help="longest acceptable pipeline wall time, hours")
    adv.add_argument("--max-cost", type=float, help="largest acceptable API cost, USD")
    adv.add_argument("--max-ram", type=float, help="largest acceptable peak memory, GB")
    adv.add_argument("--min-ari", type=float, help="lowest acceptable clustering ARI (synthetic ground truth)")
    adv.set_defaults(func=cmd_advise)

    db = sub.add_parser("db", help="refresh the views in data/metrics.duckdb")
    db.set_defaults(func=cmd_db)

    from kura_perf.experiments.stress import SCENARIOS, Settings
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
    stress.add_argument("--storm-rpm", type=int, default=d.storm_rpm, help="rate_limit_storm: requests per minute")
    stress.add_argument("--storm-429-rate", type=float, default=d.storm_429_rate,
                        help="rate_limit_storm: share of forced 429s")
    stress.add_argument("--pipelines", type=int, default=d.pipelines, help="concurrent_pipelines: 2..8")
    stress.add_argument("--timeout-s", type=float, default=d.timeout_s, help="per scenario")
    stress.add_argument("--keep-homes", action="store_true", help="keep each scenario's storage and Dagster home")
    stress.set_defaults(func=cmd_stress)

    home = sub.add_parser("dagster-home", help="create (if needed) and print the Dagster instance folder")
    home.set_defaults(func=cmd_dagster_home)

    from kura_perf.simulator.args import DESCRIPTION, add_arguments
    sim = sub.add_parser("simulate-api", help="serve the OpenAI-compatible simulator (--help lists every setting)",
                         description=DESCRIPTION)
    add_arguments(sim)  # the simulator's own option definitions, shared with `python -m kura_perf.simulator`
    sim.set_defaults(func=cmd_simulate_api)

    from kura_perf.checks.cli import add_baseline_commands
    add_baseline_commands(sub)
    from kura_perf.report.compare import add_compare_command
    add_compare_command(sub)
    from kura_perf.experiments.matrix import add_matrix_command
    add_matrix_command(sub)
    from kura_perf.experiments.usability.cli import add_usability_commands
    add_usability_commands(sub)
    from kura_perf.services.cli import add_cluster_command
    add_cluster_command(sub)
    return parser


def _clean_up_dead_runs(paths=None, check_runs: bool = False) -> list[str]:
    """Every command starts here: stages whose process died (and runs killed between stages) become
    `died` records, their Dagster runs are marked failed. Never fatal: a clean-up that fails is a
    warning, the command still runs."""
    from kura_perf.settings.paths import Paths
    from kura_perf.defs.instance import default_home, reap_and_fail

    paths = paths or Paths.from_env()
    if not check_runs and not paths.running.is_dir():
        return []
    try:
        return reap_and_fail(paths.root, home=default_home(paths.root), check_runs=check_runs)
    except Exception as exc:  # noqa: BLE001
        logging.getLogger("kura_perf").warning("could not clean up after dead runs: %s: %s", type(exc).__name__, exc)
        return []


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s", datefmt="%H:%M:%S")
    for noisy in ("alembic", "sentence_transformers", "httpx", "numba"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    try:
        if args.command not in ("run", "db"):  # those two clean up themselves, with the Dagster runs
            _clean_up_dead_runs()
        return args.func(args)
    except KuraPerfError as exc:
        print(f"kura-perf: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("kura-perf: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:
        from kura_perf.meter.failures import is_memory_exhaustion, memory_reason

        if not is_memory_exhaustion(exc):
            raise
        print(f"kura-perf: error: {memory_reason(exc)}; any stage it stopped is recorded as a breaking point",
              file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
