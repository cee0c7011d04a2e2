"""Querying the store. Our own queries use an in-memory DuckDB connection over the record files, so
they never contend for the data/metrics.duckdb file that an analyst may have open."""

from __future__ import annotations

import logging
from pathlib import Path

import duckdb
import pandas as pd

from kura_perf.location import Location, resolve
from kura_perf.store.views import all_view_sql

log = logging.getLogger(__name__)


def connect(metrics_dir) -> duckdb.DuckDBPyConnection:
    """metrics_dir: a local folder or an fsspec URL (read through that filesystem)."""
    con = duckdb.connect(":memory:")
    root = resolve(metrics_dir)
    if isinstance(root, Location):
        con.register_filesystem(root.fs)
    for stmt in all_view_sql(metrics_dir):
        con.execute(stmt)
    return con


def query(metrics_dir, sql: str, params: list | None = None) -> pd.DataFrame:
    con = connect(metrics_dir)
    try:
        return con.execute(sql, params or []).df()
    finally:
        con.close()


def refresh_database(metrics_dir: Path, database: Path) -> bool:
    """(Re)create the views in the analysts' DuckDB file. Returns False, without failing, when
    another process holds the file: the record files are the truth and lose nothing meanwhile."""
    database.parent.mkdir(parents=True, exist_ok=True)
    try:
        con = duckdb.connect(str(database))
    except duckdb.IOException as exc:
        log.warning("metrics database %s is busy (%s); views not refreshed, no data lost", database, exc)
        return False
    try:
        root = resolve(metrics_dir)
        if isinstance(root, Location):
            con.register_filesystem(root.fs)
        for stmt in all_view_sql(metrics_dir):
            con.execute(stmt)
    finally:
        con.close()
    return True
