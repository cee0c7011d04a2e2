"""`kura-perf sql | db`: query the metrics store, refresh its DuckDB views (and recover what dead runs left)."""

from __future__ import annotations

import sys
from pathlib import Path

from kura_perf.cli import dagster_home
from kura_perf.cli.printing import print_frame
from kura_perf.errors import KuraPerfError
from kura_perf.settings.paths import Paths
from kura_perf.store import query, refresh_database
from kura_perf.store.leftovers import commit_leftovers
from kura_perf.store.liveness import live_runs
from kura_perf.store.quarantine import QUARANTINE
from kura_perf.store.validation import screen_record_files

SQL_DESCRIPTION = (
    "Run a DuckDB query over the metrics store's views (stage_runs, latest_stage_runs, scaling, ...). "
    "Read-only: only queries run (SELECT, DESCRIBE, SHOW, SUMMARIZE, EXPLAIN); COPY, ATTACH, "
    "CREATE, INSERT, INSTALL/LOAD, SET and the like are refused (exit 2), and the connection "
    "itself can write no file and reach nothing outside the store. Record files can be read "
    "directly as kurastore://<table>/date=*/*.parquet. To write results elsewhere, "
    "`kura-perf db` and open data/metrics.duckdb in your own DuckDB shell.")


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
        print_frame(df, width=200, max_columns=40, max_rows=500)
    return 0


def cmd_db(args) -> int:
    paths = Paths.from_env()
    marked = dagster_home.clean_up_dead_runs(paths, check_runs=True)
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


def add_commands(sub) -> None:
    """sql reads the run records, so `main` cleans up after dead runs first: a query right after a crash
    sees the stage that died as a `died` record. db does its own clean-up (it counts what it recovers)."""
    sql = sub.add_parser("sql", help="run a read-only DuckDB query over the metrics store", description=SQL_DESCRIPTION)
    sql.add_argument("query", nargs="?", help="the SQL; '-' reads it from standard input")
    sql.add_argument("--file", metavar="PATH", help="read the SQL from this file ('-': standard input)")
    sql.add_argument("--format", choices=["table", "csv", "json"], default="table")
    sql.set_defaults(func=cmd_sql, reaps=True)

    db = sub.add_parser("db", help="refresh the views in data/metrics.duckdb")
    db.set_defaults(func=cmd_db, reaps=False)
