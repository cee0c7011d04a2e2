"""Stage outputs on disk: data/storage/<profile>/<scale>/<stage>.* (Parquet tables, .npy arrays).

A stage's files are each written to a temp name and renamed; its manifest (names and sizes) is
written last, the same way. Readers go through the manifest, so a stage that died half-way is
seen as absent, never as half-written. The manifest's sizes are the stage's storage figure.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from kura_perf.errors import StageError


@dataclass
class StageData:
    """What a stage produces and the next stage reads."""

    tables: dict[str, pd.DataFrame] = field(default_factory=dict)
    arrays: dict[str, np.ndarray] = field(default_factory=dict)


def _file_name(stage: str, key: str, suffix: str) -> str:
    return f"{stage}{'' if key == 'main' else '.' + key}{suffix}"


def _atomic(path: Path, write) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    write(tmp)
    with open(tmp, "rb") as f:
        os.fsync(f.fileno())
    os.replace(tmp, path)


def _save_npy(path: Path, array: np.ndarray) -> None:
    with open(path, "wb") as f:  # a file object: np.save would append ".npy" to a temp name
        np.save(f, array)


def write_stage(folder: Path, stage: str, data: StageData) -> dict[str, int]:
    """Write all outputs of a stage; return {file name: bytes}."""
    folder.mkdir(parents=True, exist_ok=True)
    invalidate(folder, stage)
    sizes: dict[str, int] = {}
    for key, table in data.tables.items():
        path = folder / _file_name(stage, key, ".parquet")
        _atomic(path, lambda tmp, t=table: t.to_parquet(tmp, index=False))
        sizes[path.name] = path.stat().st_size
    for key, array in data.arrays.items():
        path = folder / _file_name(stage, key, ".npy")
        _atomic(path, lambda tmp, a=array: _save_npy(tmp, a))
        sizes[path.name] = path.stat().st_size
    write_manifest(folder, stage, sorted(data.tables), sorted(data.arrays), sizes)
    return sizes


def write_manifest(folder: Path, stage: str, tables: list[str], arrays: list[str], sizes: dict[str, int]) -> None:
    """The stage's manifest, written last: from here on readers see the stage as complete."""
    body = {"stage": stage, "tables": sorted(tables), "arrays": sorted(arrays), "files": sizes}
    _atomic(folder / f"{stage}.manifest.json", lambda tmp: tmp.write_text(json.dumps(body, indent=1)))


def invalidate(folder: Path, stage: str) -> None:
    """A re-run makes the old output unreadable before touching any of its files."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{stage}.manifest.json").unlink(missing_ok=True)


def file_path(folder: Path, stage: str, key: str, suffix: str) -> Path:
    return folder / _file_name(stage, key, suffix)


def fsync_replace(tmp: Path, path: Path) -> None:
    """Make a fully written temp file the real one (after fsync), as every writer here does."""
    with open(tmp, "rb") as f:
        os.fsync(f.fileno())
    os.replace(tmp, path)


def has_stage(folder: Path, stage: str) -> bool:
    return (folder / f"{stage}.manifest.json").is_file()


def _manifest(folder: Path, stage: str) -> dict:
    manifest = folder / f"{stage}.manifest.json"
    if not manifest.is_file():
        raise StageError(f"no complete output of stage '{stage}' in {folder}: materialize it first")
    return json.loads(manifest.read_text())


def stage_rows(folder: Path, stage: str, key: str = "main") -> int:
    """Rows of one stored table, from the Parquet footer (nothing else is read)."""
    import pyarrow.parquet as pq

    if key not in _manifest(folder, stage)["tables"]:
        raise StageError(f"stage '{stage}' in {folder} has no table '{key}'")
    return pq.ParquetFile(folder / _file_name(stage, key, ".parquet")).metadata.num_rows


def iter_table(folder: Path, stage: str, key: str, batch_size: int):
    """One stored table in slices of at most `batch_size` rows, in order, each as read_stage would give it.

    Only one slice (and one Parquet row group's buffers) is in memory at a time: what lets a
    streamed stage's peak stay bounded by its batch.
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    if key not in _manifest(folder, stage)["tables"]:
        raise StageError(f"stage '{stage}' in {folder} has no table '{key}'")
    parquet = pq.ParquetFile(folder / _file_name(stage, key, ".parquet"))
    schema = parquet.schema_arrow  # carries the pandas metadata, so dtypes come back as read_stage's
    for batch in parquet.iter_batches(batch_size=batch_size):
        yield pa.Table.from_batches([batch], schema=schema).to_pandas()


def read_stage(folder: Path, stage: str) -> StageData:
    body = _manifest(folder, stage)
    data = StageData()
    for key in body["tables"]:
        data.tables[key] = pd.read_parquet(folder / _file_name(stage, key, ".parquet"))
    for key in body["arrays"]:
        data.arrays[key] = np.load(folder / _file_name(stage, key, ".npy"))
    return data


def stage_bytes(folder: Path, stage: str) -> int:
    manifest = folder / f"{stage}.manifest.json"
    if not manifest.is_file():
        return 0
    return sum(json.loads(manifest.read_text())["files"].values())
