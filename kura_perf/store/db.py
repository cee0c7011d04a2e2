"""Querying the store. Our own queries use an in-memory DuckDB connection over the record files, so
they never contend for the data/metrics.duckdb file that an analyst may have open. Before the views
are made, every record file is checked against its table's schema (store/validation.py): a file
that does not match, or cannot be read, is quarantined instead of breaking every query."""

from __future__ import annotations

import logging
from pathlib import Path

import duckdb
import pandas as pd

from kura_perf.errors import KuraPerfError
from kura_perf.files.location import Location, resolve
from kura_perf.meter.memory import virtual_size_bytes
from kura_perf.store import readonly
from kura_perf.store.quarantine import file_named_in, quarantine
from kura_perf.store.validation import screen_record_files
from kura_perf.store.views import all_view_sql

log = logging.getLogger(__name__)

# How many unreadable record files one query may move aside before giving up.
MAX_QUARANTINED_PER_QUERY = 50


class StoreError(KuraPerfError):
    """The metrics database could not be written, for a reason other than another process holding it."""


def _register(con, metrics_dir) -> None:
    """A store on an fsspec URL (object storage shared by workers) is read through that filesystem."""
    root = resolve(metrics_dir)
    if isinstance(root, Location):
        con.register_filesystem(root.fs)


def _screen(metrics_dir) -> None:
    """Quarantine the record files a query must not read (local stores: object storage has no rename)."""
    if not isinstance(resolve(metrics_dir), Location):
        screen_record_files(metrics_dir)


def connect(metrics_dir) -> duckdb.DuckDBPyConnection:
    """metrics_dir: a local folder or an fsspec URL."""
    _screen(metrics_dir)
    con = duckdb.connect(":memory:", config=_memory_config())
    _register(con, metrics_dir)
    for stmt in all_view_sql(metrics_dir, con):
        con.execute(stmt)
    return con


def connect_read_only(metrics_dir) -> duckdb.DuckDBPyConnection:
    """The same views on a connection that can read the record files and write nothing anywhere
    (store/readonly.py): for SQL a user typed."""
    _screen(metrics_dir)
    con = duckdb.connect(":memory:", config={**_memory_config(), **readonly.CONNECT_CONFIG})
    try:
        readonly.lock_down(con, metrics_dir)
        for stmt in all_view_sql(metrics_dir, con, base=readonly.PREFIX):
            con.execute(stmt)
    except BaseException:
        con.close()
        raise
    return con


def _memory_config() -> dict:
    """Under an OS address-space cap (ulimit -v), keep DuckDB's buffer pool well inside it: its default
    (80% of RAM) would fail to allocate and end our queries with an out-of-memory error."""
    import resource

    soft, _ = resource.getrlimit(resource.RLIMIT_AS)
    if soft == resource.RLIM_INFINITY:
        return {}
    # What is left of the cap now, not the cap: the process's own mappings (numpy, Arrow, models) may
    # already hold most of it. DuckDB also maps its own code and workspaces beside the buffer pool.
    headroom = soft - virtual_size_bytes()
    return {"memory_limit": f"{max(min(soft // 8, headroom // 4) // 2**20, 16)}MB", "threads": 1}


def query(metrics_dir: Path, sql: str, params: list | None = None, read_only: bool = False) -> pd.DataFrame:
    """Run `sql` over the views. A record file DuckDB cannot read is quarantined and the query retried.
    read_only: `sql` is a user's: refuse any statement but a query (ReadOnlyStoreError) and run it on a
    connection that cannot write (store/readonly.py)."""
    if read_only:
        readonly.refuse_writes(sql)
    for _ in range(MAX_QUARANTINED_PER_QUERY + 1):
        con = None
        try:
            con = connect_read_only(metrics_dir) if read_only else connect(metrics_dir)
            return con.execute(sql, params or []).df()
        except duckdb.Error as exc:
            bad = None if isinstance(resolve(metrics_dir), Location) else file_named_in(exc, metrics_dir)
            if bad is None:
                raise
            quarantine(bad, Path(metrics_dir).parent, str(exc).splitlines()[0])  # or another process did
        finally:
            if con is not None:
                con.close()
    raise StoreError(f"more than {MAX_QUARANTINED_PER_QUERY} unreadable record files under {metrics_dir}")


def _is_lock_conflict(exc: duckdb.Error) -> bool:
    text = str(exc).lower()
    return "lock" in text and ("conflicting" in text or "could not set lock" in text)


def refresh_database(metrics_dir: Path, database: Path) -> bool:
    """(Re)create the views in the analysts' DuckDB file. Returns False, without failing, when
    another process holds the file: the record files are the truth and lose nothing meanwhile.
    Any other failure (a full disk, a read-only folder) raises StoreError naming it."""
    try:
        database.parent.mkdir(parents=True, exist_ok=True)
        con = duckdb.connect(str(database))
    except duckdb.IOException as exc:
        if not _is_lock_conflict(exc):
            raise StoreError(f"cannot open the metrics database {database}: {str(exc).splitlines()[0]}") from None
        log.warning("metrics database %s is busy (%s); views not refreshed, no data lost", database, exc)
        return False
    except OSError as exc:
        raise StoreError(f"cannot create the metrics database {database}: {exc}") from None
    try:
        _screen(metrics_dir)
        _register(con, metrics_dir)
        for stmt in all_view_sql(metrics_dir, con):
            con.execute(stmt)
    except duckdb.Error as exc:
        raise StoreError(f"cannot write the views into {database}: {str(exc).splitlines()[0]}") from None
    finally:
        con.close()
    return True
