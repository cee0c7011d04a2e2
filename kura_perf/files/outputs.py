"""Stage outputs on disk: data/storage/<profile>/<scale>/<stage>.* (Parquet tables, .npy arrays).

A stage's files, its manifest (names and sizes) last, are each written in full to a unique temp name,
and only when all of them are complete are they renamed into place (kura_perf.files.atomic.PublishGroup).
Readers go through the manifest, so a stage that died half-way is seen as absent, never as
half-written; and a write that fails (a full disk above all) leaves nothing behind: no temp file and
no file of the stage without its manifest, and the error names the file it was writing. The
manifest's sizes are the stage's storage figure: the sizes of the files this writer wrote.

Two runs of the same partition may write the same stage at once: writers of one partition-stage hold
an exclusive lock for the whole write (files + manifest), readers a shared one, so a reader never
mixes one writer's manifest with another's files and a manifest never names another run's sizes.

The manifest also holds what each file must contain (a table's rows and file checksum, an array's
dtype, shape and data checksum): a reader checks them, so a file damaged or replaced after the stage
wrote it is refused with its name and what is wrong, never taken as the stage's output.

`folder` may also be an fsspec URL or a `Location` (results shared by workers on several machines):
local paths and file:// URLs keep all of the above; other URLs write each object in one PUT (an
object appears whole or not at all), the manifest last, without the lock and the checksums (the
cluster jobs give each run its own shard folder, and one merge step writes a partition's stage).
"""

from __future__ import annotations

import hashlib
import io
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from kura_perf.errors import StageError
from kura_perf.files.atomic import PublishGroup, atomic_write_text
from kura_perf.files.location import Location, resolve
from kura_perf.files.locks import file_lock


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


def _file_sha256(path: Path) -> str:
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def _array_sha256(array: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(array).data).hexdigest()


def _array_meta(array: np.ndarray) -> dict:
    return {"dtype": array.dtype.str, "shape": list(array.shape), "sha256": _array_sha256(array)}


def _to_bytes(write) -> bytes:
    buffer = io.BytesIO()
    write(buffer)
    return buffer.getvalue()


def _write_stage_remote(folder: Location, stage: str, data: StageData) -> dict[str, int]:
    folder.mkdir()
    manifest = folder / f"{stage}.manifest.json"
    manifest.unlink(missing_ok=True)
    sizes: dict[str, int] = {}
    for key, table in data.tables.items():
        blob = _to_bytes(lambda b, t=table: t.to_parquet(b, index=False))
        (folder / _file_name(stage, key, ".parquet")).write_bytes(blob)
        sizes[_file_name(stage, key, ".parquet")] = len(blob)
    for key, array in data.arrays.items():
        blob = _to_bytes(lambda b, a=array: np.save(b, a))
        (folder / _file_name(stage, key, ".npy")).write_bytes(blob)
        sizes[_file_name(stage, key, ".npy")] = len(blob)
    body = {"stage": stage, "tables": sorted(data.tables), "arrays": sorted(data.arrays), "files": sizes}
    manifest.write_text(json.dumps(body, indent=1))
    return sizes


def _read_stage_remote(folder: Location, stage: str) -> StageData:
    manifest = folder / f"{stage}.manifest.json"
    if not manifest.is_file():
        raise StageError(f"no complete output of stage '{stage}' in {folder}: materialize it first")
    body = json.loads(manifest.read_text())
    data = StageData()
    for key in body["tables"]:
        data.tables[key] = pd.read_parquet(io.BytesIO((folder / _file_name(stage, key, ".parquet")).read_bytes()))
    for key in body["arrays"]:
        data.arrays[key] = np.load(io.BytesIO((folder / _file_name(stage, key, ".npy")).read_bytes()))
    return data


def write_stage(folder, stage: str, data: StageData, checkpoint: dict | None = None) -> dict[str, int]:
    """Write all outputs of a stage; return {file name: bytes}. `checkpoint` (what produced the output:
    see kura_perf/pipeline/checkpoints.py) is kept in the manifest so a resumed pipeline can tell whether to reuse it."""
    folder = resolve(folder)
    if isinstance(folder, Location):
        return _write_stage_remote(folder, stage, data)
    folder.mkdir(parents=True, exist_ok=True)
    manifest = folder / f"{stage}.manifest.json"
    sizes: dict[str, int] = {}
    contents: dict[str, dict] = {}
    with file_lock(_lock_path(folder, stage)), PublishGroup() as files:
        manifest.unlink(missing_ok=True)  # a re-run invalidates the old output before touching it
        for key, table in data.tables.items():
            staged = files.stage(folder / _file_name(stage, key, ".parquet"),
                                 lambda tmp, t=table: t.to_parquet(tmp, index=False))
            sizes[staged.path.name] = staged.size
            contents[staged.path.name] = {"rows": len(table), "sha256": _file_sha256(staged.tmp)}
        for key, array in data.arrays.items():
            staged = files.stage(folder / _file_name(stage, key, ".npy"), lambda tmp, a=array: _save_npy(tmp, a))
            sizes[staged.path.name] = staged.size
            contents[staged.path.name] = _array_meta(np.asarray(array))
        body = {"stage": stage, "tables": sorted(data.tables), "arrays": sorted(data.arrays), "files": sizes,
                "contents": contents}
        if checkpoint is not None:
            body["checkpoint"] = checkpoint
        files.stage(manifest, lambda tmp: tmp.write_text(json.dumps(body, indent=1), encoding="utf-8"))
        files.publish_all()
    return sizes


# -- for writers and readers that go batch by batch (kura_perf.pipeline.streaming; local folders only) ------------------------------

def stage_lock(folder: Path, stage: str, shared: bool = False):
    """The partition-stage lock write_stage and read_stage take: exclusive to write, shared to read."""
    return file_lock(_lock_path(folder, stage), shared=shared)


def manifest_path(folder: Path, stage: str) -> Path:
    return folder / f"{stage}.manifest.json"


def manifest_text(stage: str, tables: list[str], arrays: list[str], sizes: dict[str, int]) -> str:
    """A streamed stage's manifest (no checksums: its files were never whole in memory)."""
    return json.dumps({"stage": stage, "tables": sorted(tables), "arrays": sorted(arrays), "files": sizes}, indent=1)


def write_manifest(folder: Path, stage: str, tables: list[str], arrays: list[str], sizes: dict[str, int]) -> None:
    """The stage's manifest, written last (the caller holds the stage lock): from here on readers see
    the stage as complete."""
    atomic_write_text(manifest_path(folder, stage), manifest_text(stage, tables, arrays, sizes))


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


def has_stage(folder, stage: str) -> bool:
    return (resolve(folder) / f"{stage}.manifest.json").is_file()


def _rerun(stage: str) -> str:
    return f"re-run stage '{stage}' to rewrite it"


def read_manifest(folder: Path, stage: str) -> dict:
    """The stage's manifest, checked for the keys readers need; a StageError names the file otherwise."""
    manifest = folder / f"{stage}.manifest.json"
    if not manifest.is_file():
        raise StageError(f"no complete output of stage '{stage}' in {folder}: materialize it first")
    try:
        body = json.loads(manifest.read_text())
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise StageError(f"{manifest}: unreadable stage manifest ({type(exc).__name__}: {exc}); "
                         f"{_rerun(stage)}") from None
    if not isinstance(body, dict):
        raise StageError(f"{manifest}: not a stage manifest (a JSON object with tables, arrays, files); "
                         f"{_rerun(stage)}")
    for key, kind in (("tables", list), ("arrays", list), ("files", dict)):
        if not isinstance(body.get(key), kind):
            got = "missing" if key not in body else type(body[key]).__name__
            raise StageError(f"{manifest}: key '{key}' must be a {kind.__name__} (got {got}); {_rerun(stage)}")
    return body


def _check_file(path: Path, body: dict, stage: str) -> None:
    if not path.is_file():
        raise StageError(f"{path}: missing, though the manifest of stage '{stage}' lists it; {_rerun(stage)}")
    expected = body["files"].get(path.name)
    actual = path.stat().st_size
    if isinstance(expected, int) and actual != expected:
        raise StageError(f"{path}: {actual} bytes, the manifest of stage '{stage}' says {expected}: the file changed "
                         f"after the stage wrote it; {_rerun(stage)}")


def _read_table(path: Path, body: dict, stage: str) -> pd.DataFrame:
    _check_file(path, body, stage)
    meta = body.get("contents", {}).get(path.name, {})  # manifests before checksums have none: size only
    if meta.get("sha256") and _file_sha256(path) != meta["sha256"]:
        raise StageError(f"{path}: contents differ from what stage '{stage}' wrote (checksum mismatch); "
                         f"{_rerun(stage)}")
    try:
        table = pd.read_parquet(path)
    except Exception as exc:  # noqa: BLE001 - pyarrow raises many kinds for a damaged file
        raise StageError(f"{path}: not a readable Parquet table ({type(exc).__name__}: {exc}); "
                         f"{_rerun(stage)}") from None
    if "rows" in meta and len(table) != meta["rows"]:
        raise StageError(f"{path}: {len(table)} rows, the manifest says {meta['rows']}; {_rerun(stage)}")
    return table


def _read_array(path: Path, body: dict, stage: str) -> np.ndarray:
    _check_file(path, body, stage)
    try:
        array = np.load(path)
    except Exception as exc:  # noqa: BLE001 - "No data left in file", a bad header, a pickle refused
        raise StageError(f"{path}: not a readable .npy array ({type(exc).__name__}: {exc}); {_rerun(stage)}") from None
    meta = body.get("contents", {}).get(path.name)
    if meta:
        if array.dtype.str != meta.get("dtype") or list(array.shape) != list(meta.get("shape", [])):
            raise StageError(f"{path}: a {array.dtype.str} array of shape {list(array.shape)}, the manifest says "
                             f"{meta.get('dtype')} of shape {meta.get('shape')}; {_rerun(stage)}")
        if _array_sha256(array) != meta.get("sha256"):
            raise StageError(f"{path}: values differ from what stage '{stage}' wrote (checksum mismatch); "
                             f"{_rerun(stage)}")
    if array.dtype.kind == "f" and not np.isfinite(array).all():
        bad = int((~np.isfinite(array)).sum())
        raise StageError(f"{path}: {bad} value(s) are NaN or infinite; {_rerun(stage)}")
    return array


def read_stage(folder, stage: str) -> StageData:
    folder = resolve(folder)
    if isinstance(folder, Location):
        return _read_stage_remote(folder, stage)
    if not has_stage(folder, stage):
        raise StageError(f"no complete output of stage '{stage}' in {folder}: materialize it first")
    with file_lock(_lock_path(folder, stage), shared=True):  # never one writer's manifest with another's files
        body = read_manifest(folder, stage)
        data = StageData()
        for key in body["tables"]:
            data.tables[key] = _read_table(folder / _file_name(stage, key, ".parquet"), body, stage)
        for key in body["arrays"]:
            data.arrays[key] = _read_array(folder / _file_name(stage, key, ".npy"), body, stage)
    return data


def stage_bytes(folder, stage: str) -> int:
    folder = resolve(folder)
    if not has_stage(folder, stage):
        return 0
    if isinstance(folder, Location):
        return sum(json.loads((folder / f"{stage}.manifest.json").read_text())["files"].values())
    return sum(read_manifest(folder, stage)["files"].values())


def peek_manifest(folder: Path, stage: str) -> dict | None:
    """The stage's manifest, or None when the stage has no complete, readable output (checkpoint look-ups)."""
    if not (folder / f"{stage}.manifest.json").is_file():
        return None
    try:
        return read_manifest(folder, stage)
    except (StageError, OSError, ValueError):
        return None
