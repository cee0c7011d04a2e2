"""Append-only record files: each record is its own small Parquet file, written to a temp name and
renamed into place. Any number of processes can append at once and readers never see a partial
file, which a single DuckDB file (one writing process at a time) cannot give us (DESIGN §5)."""

from __future__ import annotations

import uuid
from datetime import datetime, timezone
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from kura_perf.atomic import atomic_write
from kura_perf.store.schema import TABLES


def new_record_id() -> str:
    return uuid.uuid4().hex


def _conform(record: dict, schema: pa.Schema, table: str) -> dict:
    unknown = set(record) - set(schema.names)
    if unknown:
        raise ValueError(f"{table}: unknown columns {sorted(unknown)}")
    return {name: [record.get(name)] for name in schema.names}


def write_records(metrics_dir: Path, table: str, records: list[dict]) -> Path:
    """Write records (dicts keyed by column) as one new file under metrics_dir/table/date=YYYY-MM-DD/."""
    schema = TABLES[table]
    if not records:
        raise ValueError("no records to write")
    columns = {name: [] for name in schema.names}
    for rec in records:
        for name, values in _conform(rec, schema, table).items():
            columns[name].extend(values)
    arrow = pa.table(columns, schema=schema)
    day = datetime.now(timezone.utc).strftime("%Y-%m-%d")
    folder = Path(metrics_dir) / table / f"date={day}"
    folder.mkdir(parents=True, exist_ok=True)
    name = f"{datetime.now(timezone.utc).strftime('%H%M%S%f')}-{uuid.uuid4().hex[:12]}.parquet"
    final = folder / name
    atomic_write(final, lambda tmp: pq.write_table(arrow, tmp))
    return final


def write_record(metrics_dir: Path, table: str, record: dict) -> Path:
    return write_records(metrics_dir, table, [record])
