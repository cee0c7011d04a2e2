"""Stage outputs on disk: data/storage/<profile>/<scale>/<stage>.* (Parquet tables, .npy arrays).

A stage's files are each written to a unique temp name and renamed (kura_perf.atomic); its manifest
(names and sizes) is written last, the same way. Readers go through the manifest, so a stage that
died half-way is seen as absent, never as half-written. The manifest's sizes are the stage's
storage figure: the sizes of the files this writer wrote.

Two runs of the same partition may write the same stage at once: writers of one partition-stage hold
an exclusive lock for the whole write (files + manifest), readers a shared one, so a reader never
mixes one writer's manifest with another's files and a manifest never names another run's sizes.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from kura_perf.atomic import atomic_write, atomic_write_text
from kura_perf.errors import StageError
from kura_perf.locks import file_lock


@dataclass
class StageData:
    """What a stage produces and the next stage reads."""

    tables: dict[str, pd.DataFrame] = field(default_factory=dict)
    arrays: dict[str, np.ndarray] = field(default_factory=dict)


def _file_name(stage: str, key: str, suffix: str) -> str:
    return f"{stage}{'' if key == 'main' else '.' + key}{suffix}"


def _lock_path(folder: Path, stage: str) -> Path:
    return folder / f".{stage}.lock"


def _save_npy(path: Path, array: np.ndarray) -> None:
    with open(path, "wb") as f:  # a file object: np.save would append ".npy" to a temp name
        np.save(f, array)


def write_stage(folder: Path, stage: str, data: StageData) -> dict[str, int]:
    """Write all outputs of a stage; return {file name: bytes}."""
    folder.mkdir(parents=True, exist_ok=True)
    manifest = folder / f"{stage}.manifest.json"
    sizes: dict[str, int] = {}
    with file_lock(_lock_path(folder, stage)):
        manifest.unlink(missing_ok=True)  # a re-run invalidates the old output before touching it
        for key, table in data.tables.items():
            path = folder / _file_name(stage, key, ".parquet")
            sizes[path.name] = atomic_write(path, lambda tmp, t=table: t.to_parquet(tmp, index=False))
        for key, array in data.arrays.items():
            path = folder / _file_name(stage, key, ".npy")
            sizes[path.name] = atomic_write(path, lambda tmp, a=array: _save_npy(tmp, a))
        body = {"stage": stage, "tables": sorted(data.tables), "arrays": sorted(data.arrays), "files": sizes}
        atomic_write_text(manifest, json.dumps(body, indent=1))
    return sizes


# -- for writers and readers that go batch by batch (kura_perf.streaming) ------------------------------

def stage_lock(folder: Path, stage: str, shared: bool = False):
    """The partition-stage lock write_stage and read_stage take: exclusive to write, shared to read."""
    return file_lock(_lock_path(folder, stage), shared=shared)


def write_manifest(folder: Path, stage: str, tables: list[str], arrays: list[str], sizes: dict[str, int]) -> None:
    """The stage's manifest, written last (the caller holds the stage lock): from here on readers see
    the stage as complete."""
    body = {"stage": stage, "tables": sorted(tables), "arrays": sorted(arrays), "files": sizes}
    atomic_write_text(folder / f"{stage}.manifest.json", json.dumps(body, indent=1))


def invalidate(folder: Path, stage: str) -> None:
    """A re-run makes the old output unreadable before touching any of its files (hold the stage lock)."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{stage}.manifest.json").unlink(missing_ok=True)


def file_path(folder: Path, stage: str, key: str, suffix: str) -> Path:
    return folder / _file_name(stage, key, suffix)


def _manifest(folder: Path, stage: str) -> dict:
    manifest = folder / f"{stage}.manifest.json"
    if not manifest.is_file():
        raise StageError(f"no complete output of stage '{stage}' in {folder}: materialize it first")
    return json.loads(manifest.read_text())


def _table_file(folder: Path, stage: str, key: str) -> Path:
    if key not in _manifest(folder, stage)["tables"]:
        raise StageError(f"stage '{stage}' in {folder} has no table '{key}'")
    return folder / _file_name(stage, key, ".parquet")


def stage_rows(folder: Path, stage: str, key: str = "main") -> int:
    """Rows of one stored table, from the Parquet footer (nothing else is read)."""
    import pyarrow.parquet as pq

    with stage_lock(folder, stage, shared=True):
        return pq.ParquetFile(_table_file(folder, stage, key)).metadata.num_rows


def iter_table(folder: Path, stage: str, key: str, batch_size: int):
    """One stored table in slices of at most `batch_size` rows, in order, each as read_stage would give it.

    Only one slice (and one Parquet row group's buffers) is in memory at a time: what lets a
    streamed stage's peak stay bounded by its batch. The shared lock is held until the last slice.
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    with stage_lock(folder, stage, shared=True):
        parquet = pq.ParquetFile(_table_file(folder, stage, key))
        schema = parquet.schema_arrow  # carries the pandas metadata, so dtypes come back as read_stage's
        for batch in parquet.iter_batches(batch_size=batch_size):
            yield pa.Table.from_batches([batch], schema=schema).to_pandas()


def has_stage(folder: Path, stage: str) -> bool:
    return (folder / f"{stage}.manifest.json").is_file()


def read_stage(folder: Path, stage: str) -> StageData:
    manifest = folder / f"{stage}.manifest.json"
    if not manifest.is_file():
        raise StageError(f"no complete output of stage '{stage}' in {folder}: materialize it first")
    with file_lock(_lock_path(folder, stage), shared=True):
        if not manifest.is_file():
            raise StageError(f"no complete output of stage '{stage}' in {folder}: materialize it first")
        body = json.loads(manifest.read_text())
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
