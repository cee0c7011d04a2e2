"""Append-only record files: each record is its own small Parquet file, written to a temp name and
renamed into place. Any number of processes can append at once and readers never see a partial
file, which a single DuckDB file (one writing process at a time) cannot give us (DESIGN §5).
metrics_dir may be an fsspec URL (object storage shared by workers): each file is then one PUT."""

from __future__ import annotations

import io
import uuid
from datetime import datetime, timezone

import pyarrow as pa
import pyarrow.parquet as pq

from kura_perf.files.atomic import atomic_write
from kura_perf.files.location import Location, resolve
from kura_perf.store.schema import TABLES


def new_record_id() -> str:
    return uuid.uuid4().hex


def _conform(record: dict, schema: pa.Schema, table: str) -> dict:
    unknown = set(record) - set(schema.names)
    if unknown:
        raise ValueError(f"{table}: unknown columns {sorted(unknown)}")
    return {name: [record.get(name)] for name in schema.names}


def write_records(metrics_dir, table: str, records: list[dict], name: str | None = None):
    """Write records (dicts keyed by column) as one new file under metrics_dir/table/date=YYYY-MM-DD/.

    name: a fixed file stem, for writers that may run twice for the same record (a retried task):
    the second write replaces the first instead of adding a duplicate."""
    schema = TABLES[table]
    if not records:
        raise ValueError("no records to write")
    columns = {name: [] for name in schema.names}
    for rec in records:
        for column, values in _conform(rec, schema, table).items():
            columns[column].extend(values)
    arrow = pa.table(columns, schema=schema)
    day = datetime.now(timezone.utc).strftime("%Y-%m-%d")
    name = f"{name}.parquet" if name else f"{datetime.now(timezone.utc).strftime('%H%M%S%f')}-{uuid.uuid4().hex[:12]}.parquet"
    root = resolve(metrics_dir)
    if isinstance(root, Location):
        final = root / table / f"date={day}" / name
        buffer = io.BytesIO()
        pq.write_table(arrow, buffer)
        final.write_bytes(buffer.getvalue())
        return final
    folder = root / table / f"date={day}"
    folder.mkdir(parents=True, exist_ok=True)
    final = folder / name
    atomic_write(final, lambda tmp: pq.write_table(arrow, tmp))
    return final


def write_record(metrics_dir, table: str, record: dict, name: str | None = None):
    return write_records(metrics_dir, table, [record], name=name)
