"""`kura-perf sql` reads the store and cannot change anything, by construction.

An analyst's query runs on a DuckDB connection that has no writable file system at all:
- the local file system is disabled (`disabled_filesystems = 'LocalFileSystem'`), so COPY TO,
  ATTACH of a database file, EXPORT DATABASE and INSTALL (which writes ~/.duckdb) have nowhere to
  write, and no file outside the store can be read;
- the record files are read through `ReadOnlyStore`, an fsspec file system over the metrics folder
  (local or remote) that opens files for reading only and refuses every write, move, delete and
  mkdir; it is the only place DuckDB may reach (`allowed_directories` = its prefix,
  `enable_external_access = false`: no extension loading, no network, no other file);
- extensions are never installed or loaded on demand, and `lock_configuration = true` keeps any
  statement from SETting any of this back.
Before it runs, the query's statements are also parsed and anything but a query (SELECT, DESCRIBE,
SHOW, SUMMARIZE, PIVOT; EXPLAIN of one) is refused with one line naming the statement kind, so a
user gets a clear answer instead of a file-system error from deep inside DuckDB.

The in-memory catalog itself stays writable (DuckDB needs it for the views); nothing in it outlives
the command.
"""

from __future__ import annotations

import functools
import re
from pathlib import Path

import duckdb

from kura_perf.errors import KuraPerfError
from kura_perf.files.location import Location, resolve

# The URL prefix the read-only connection's views read the record files through.
PROTOCOL = "kurastore"
PREFIX = f"{PROTOCOL}://"

# Statement kinds that only read. MULTI is what DuckDB makes of a PIVOT (a query).
_READING = {"SELECT", "MULTI"}
# EXPLAIN [ANALYZE] <statement>: the statement must be a query (ANALYZE runs it). One whose statement
# cannot be isolated (EXPLAIN (FORMAT json) ...) passes only without ANALYZE: it plans, never runs.
_EXPLAIN = re.compile(r"^\s*explain(\s+analy[sz]e)?\s+", re.IGNORECASE)


class ReadOnlyStoreError(KuraPerfError):
    """A statement given to `kura-perf sql` that would write or change the connection."""


@functools.cache
def _store_filesystem_class():
    """ReadOnlyStore, built on first use (fsspec is imported only when `kura-perf sql` runs)."""
    from fsspec.implementations.dirfs import DirFileSystem

    class ReadOnlyStore(DirFileSystem):
        """The metrics folder, read-only: files open for reading; every call that would write, move,
        delete or create raises PermissionError."""

        protocol = PROTOCOL
        cachable = False  # one per connection, over its own folder

        def _join(self, path):
            for one in [path] if isinstance(path, str) else path:
                if ".." in str(one).replace("\\", "/").split("/"):
                    raise PermissionError(f"outside the metrics store: {one}")
            return super()._join(path)

        def open(self, path, mode="rb", *args, **kwargs):
            if set(mode) - {"r", "b", "t"}:
                raise PermissionError(f"the metrics store is read-only here: cannot open {path} with mode {mode!r}")
            return super().open(path, mode, *args, **kwargs)

    def refuse(name):
        def method(self, *args, **kwargs):
            raise PermissionError(f"the metrics store is read-only here ({name})")
        method.__name__ = name
        return method

    for name in ("rm_file", "_rm_file", "rm", "_rm", "delete", "cp_file", "_cp_file", "copy", "_copy", "pipe",
                 "_pipe", "pipe_file", "_pipe_file", "write_text", "write_bytes", "put_file", "_put_file", "put",
                 "_put", "mkdir", "_mkdir", "makedirs", "_makedirs", "rmdir", "mv", "move", "rename", "touch",
                 "open_async", "transaction", "start_transaction"):
        setattr(ReadOnlyStore, name, refuse(name))
    return ReadOnlyStore


def store_filesystem(metrics_dir):
    """A read-only fsspec file system whose root is the metrics folder (a local path or fsspec URL)."""
    root = resolve(metrics_dir)
    if isinstance(root, Location):
        return _store_filesystem_class()(path=root.path, fs=root.fs)
    from fsspec.implementations.local import LocalFileSystem

    return _store_filesystem_class()(path=str(root), fs=LocalFileSystem())


def lock_down(con: duckdb.DuckDBPyConnection, metrics_dir) -> None:
    """Register the read-only store and take every other way to the outside away from `con`.
    Raises ReadOnlyStoreError if this DuckDB cannot (a version without these settings): then the
    query does not run at all."""
    con.register_filesystem(store_filesystem(metrics_dir))
    # Order matters: allowed_directories can only be set while external access is on, and the local
    # file system can only be disabled after that switch.
    settings = [("allowed_directories", [PREFIX]), ("enable_external_access", False),
                ("disabled_filesystems", "LocalFileSystem"), ("lock_configuration", True)]
    for name, value in settings:
        try:
            con.execute(f"SET {name} = {_sql_literal(value)}")
        except duckdb.Error as exc:
            raise ReadOnlyStoreError(f"cannot make the sql connection read-only (DuckDB {duckdb.__version__}: "
                                     f"SET {name}: {str(exc).splitlines()[0]}); refusing to run the query") from None


def _sql_literal(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return "[" + ", ".join(_sql_literal(v) for v in value) + "]"
    return "'" + str(value).replace("'", "''") + "'"


# Settings given when the connection is opened (lock_down adds the rest once the store is registered).
CONNECT_CONFIG = {"autoinstall_known_extensions": False, "autoload_known_extensions": False,
                  "allow_community_extensions": False}


def refuse_writes(sql: str) -> None:
    """Raise ReadOnlyStoreError, naming the statement kind, unless every statement in `sql` only reads.
    A statement DuckDB cannot parse is left to the query itself (its error names the syntax problem)."""
    try:
        statements = duckdb.extract_statements(sql)
    except duckdb.ParserException:
        return
    except (ValueError, duckdb.Error):  # a statement kind this duckdb's Python API has no name for
        raise ReadOnlyStoreError(_refusal("this")) from None
    for statement in statements:
        kind = statement.type.name
        if kind == "EXPLAIN":
            explain = _EXPLAIN.match(statement.query)
            inner = statement.query[explain.end():].strip().rstrip(";") if explain else ""
            try:
                kinds = {s.type.name for s in duckdb.extract_statements(inner)} if inner else None
            except (ValueError, duckdb.Error):
                kinds = None
            if (kinds is not None and kinds <= _READING) or (kinds is None and not (explain and explain.group(1))):
                continue
            kind = "EXPLAIN " + ("/".join(sorted(kinds - _READING)) if kinds else "ANALYZE")
        if kind not in _READING:
            raise ReadOnlyStoreError(_refusal(kind))


_KIND_NAMES = {"LOAD": "INSTALL/LOAD"}  # DuckDB parses INSTALL as a LOAD statement


def _refusal(kind: str) -> str:
    what = "this statement is" if kind == "this" else f"{_KIND_NAMES.get(kind, kind)} statements are"
    return f"sql is read-only: {what} refused (only queries: SELECT, DESCRIBE, SHOW, SUMMARIZE, EXPLAIN)"


def file_in_store(url: str, metrics_dir) -> Path | None:
    """The local record file a `kurastore://...` name in a DuckDB error stands for."""
    if not url.startswith(PREFIX) or isinstance(resolve(metrics_dir), Location):
        return None
    return Path(metrics_dir) / url[len(PREFIX):]
