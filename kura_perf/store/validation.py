"""Record files are checked against store/schema.py before DuckDB reads them.

DuckDB reads every record file of a table through one glob, casting each column to the schema's
type in the view. A file whose Parquet footer is readable but whose columns are wrong would either
end every query over that table in a ConversionException (a `wall_s` of strings) or be read in as
rows of NULLs (a file of some other table, `{x: int}`). So each file's footer is compared with its
table's schema first, and a file that does not match is quarantined like an unreadable one, with a
warning naming the file and the offending column.

What a file must have (the rules are here and nowhere else; the columns and types come from
store/schema.py):
- its table's key column (`record_id`, `schema.KEY_COLUMN`): a file without it is no record file;
- every schema column it does have in a type that casts to the schema's without loss (an integer
  where a double is wanted, a timestamp of another unit, an all-null column are fine; a string
  where a number is wanted is not).
A file may lack columns added to the schema after it was written: they read as NULL (old data
roots keep working). Columns the schema does not know (one since removed, say) are accepted and
ignored: the views select the schema's columns only.

Reading a footer costs a file open and a few KB; a data root can hold thousands of record files and
every query re-screens them, so a file found good is remembered (per process) by path, size and
modification time, and only new or rewritten files are read again.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from kura_perf.store.quarantine import quarantine
from kura_perf.store.schema import KEY_COLUMN, TABLES


def _is_text(t: pa.DataType) -> bool:
    is_view = getattr(pa.types, "is_string_view", lambda _: False)  # pyarrow >= 16
    return pa.types.is_string(t) or pa.types.is_large_string(t) or is_view(t)


def _accepts(wanted: pa.DataType, have: pa.DataType) -> bool:
    """Whether a file column of type `have` reads as the schema's `wanted` without loss or failure."""
    if pa.types.is_null(have) or have == wanted:
        return True
    if pa.types.is_string(wanted):
        return _is_text(have)
    if pa.types.is_boolean(wanted):
        return pa.types.is_boolean(have)
    if pa.types.is_integer(wanted):
        return pa.types.is_integer(have) and have != pa.uint64()  # a uint64 may not fit a BIGINT
    if pa.types.is_floating(wanted):
        return pa.types.is_floating(have) or pa.types.is_integer(have)
    if pa.types.is_timestamp(wanted):
        return pa.types.is_timestamp(have)
    if pa.types.is_list(wanted):
        return ((pa.types.is_list(have) or pa.types.is_large_list(have))
                and _accepts(wanted.value_type, have.value_type))
    return False


def schema_problem(table: str, file_schema: pa.Schema) -> str | None:
    """None when a file of `file_schema` can stand in `table`; else one line naming the offending column."""
    schema = TABLES[table]
    if KEY_COLUMN in schema.names and KEY_COLUMN not in file_schema.names:
        found = ", ".join(file_schema.names[:5]) + (", ..." if len(file_schema.names) > 5 else "")
        return f"no column '{KEY_COLUMN}': not a {table} record file (its columns: {found or 'none'})"
    for have in file_schema:
        if have.name in schema.names:
            wanted = schema.field(have.name).type
            if not _accepts(wanted, have.type):
                return f"column '{have.name}' is {have.type}, {table} wants {wanted}"
    return None


@dataclass
class Screening:
    """What one pass over the record files moved aside."""

    unreadable: list[Path] = field(default_factory=list)
    mismatched: list[Path] = field(default_factory=list)

    @property
    def moved(self) -> list[Path]:
        return self.unreadable + self.mismatched


_known_good: set[tuple[str, int, int]] = set()
_lock = threading.Lock()


def _identity(path: Path) -> tuple[str, int, int] | None:
    try:
        st = path.stat()
    except FileNotFoundError:
        return None  # moved by another process meanwhile
    return str(path), st.st_size, st.st_mtime_ns


def screen_record_files(metrics_dir, tables=None) -> Screening:
    """Check every record file under metrics_dir (a local folder) against its table's schema, once per
    file version; quarantine the unreadable and the mismatched. tables: only these tables' folders
    (None: every folder, files of folders that are no table only for readability)."""
    metrics_dir = Path(metrics_dir)
    result = Screening()
    if tables is not None:
        folders = [metrics_dir / t for t in tables]
    elif metrics_dir.is_dir():
        folders = sorted(p for p in metrics_dir.iterdir() if p.is_dir())
    else:
        folders = []
    for folder in folders:
        table = folder.name if folder.name in TABLES else None
        for path in sorted(folder.glob("date=*/*.parquet")):
            key = _identity(path)
            if key is None:
                continue
            with _lock:
                if key in _known_good:
                    continue
            try:
                problem, unreadable = _file_problem(path, table)
            except FileNotFoundError:
                continue  # another process moved it meanwhile
            if problem is None:
                with _lock:
                    _known_good.add(key)
                continue
            what = "unreadable record file" if unreadable else "record file not matching the schema"
            target = quarantine(path, metrics_dir.parent, problem, what=what)
            if target is not None:
                (result.unreadable if unreadable else result.mismatched).append(target)
    return result


def _file_problem(path: Path, table: str | None) -> tuple[str | None, bool]:
    """(None, False) for a good file; else (the reason, whether the file could not be read at all)."""
    try:
        file_schema = pq.read_schema(path)
    except FileNotFoundError:
        raise
    except Exception as exc:  # noqa: BLE001 - any failure to read the footer is the reason to move it
        return f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}", True
    if table is None:
        return None, False
    return schema_problem(table, file_schema), False


def forget_known_good() -> None:
    """Drop the per-process memory of screened files (tests)."""
    with _lock:
        _known_good.clear()
