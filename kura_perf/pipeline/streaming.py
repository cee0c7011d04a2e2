"""Streaming a stage through the partition in batches (proposal §2.2, "process conversations in batches
vs all-at-once"), selected by the profile key `stream_batch_size`.

The row-wise stages (conversations, summaries, embeddings) can be run on a slice of the partition at
a time: read `stream_batch_size` rows of the upstream output, run the backend's own stage on them,
write that batch's output, drop it, read the next. Peak memory is then bounded by the batch, not by
the partition. The stored files are the ones an all-at-once run writes (same names, same rows, same
types, same manifest), so every downstream reader is unchanged:

* tables: each batch is written as a Parquet part file; at the end the parts are assembled, one at a
  time, into the stage's file with a pyarrow ParquetWriter (one row group per batch), under the
  schema unified over all parts (a batch whose list column happened to be all empty has a null
  item type that the other batches' strings must win over, as in the all-at-once frame);
* arrays: a .npy header with the final shape (rows from the upstream table's Parquet footer), then
  each batch's rows appended (not np.lib.format.open_memmap: mapped pages would count in RSS).
Files go to temp names and are renamed only once all of them, the manifest too, are complete (the
manifest last; kura_perf.files.atomic.PublishGroup), under the partition-stage lock that write_stage takes
(readers take it shared): a stage that dies half-way (a full disk, say) leaves no readable output
and no file without its manifest, and its parts are removed; a failed write names the stage file.

Backends stay batch-agnostic: the same `backend.run(stage, inputs)` gets a slice (StageInputs.offset
says where it starts). Stages whose input is not a slice of rows (a conversations file, which the
loader validates in one pass for unique ids and the scale's count; summaries from a Kura checkpoint,
read in one pass for the partition's chat_ids) run whole.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from kura_perf.errors import StageError
from kura_perf.files import outputs
from kura_perf.files.atomic import PublishGroup, naming, temp_name
from kura_perf.files.outputs import StageData
from kura_perf.meter.api import ApiCounters
from kura_perf.profiles import Profile
from kura_perf.stages.base import StageInputs, StageResult

STREAMED_STAGES = ("conversations", "summaries", "embeddings")
# The upstream table each streamed stage slices (conversations slices the generator's index range).
STREAM_SOURCE = {"summaries": ("conversations", "main"), "embeddings": ("summaries", "main")}
SUMMED_EXTRA = ("raw_text_bytes",)  # per-batch figures that add up; other extra fields come from batch 1
MAX_PROBLEMS_KEPT = 20


def streams(stage: str, profile: Profile) -> bool:
    """True if this stage of this profile runs in batches."""
    if profile.stream_batch_size is None or stage not in STREAMED_STAGES:
        return False
    if stage == "summaries" and profile.summary_model.startswith("checkpoint:"):
        return False  # a Kura checkpoint is read in one pass per stage, not once per batch
    return not (stage == "conversations" and profile.data_file)


@dataclass
class _ArrayFile:
    """A .npy being written: its header already says the final shape; rows are appended."""

    tmp: Path
    handle: object
    dtype: np.dtype
    shape: tuple
    rows: int = 0


class StreamedOutput:
    """Writes one stage's output batch by batch; `finish()` assembles the files and the manifest."""

    def __init__(self, folder: Path, stage: str, total_rows: int):
        self.folder, self.stage, self.total_rows = Path(folder), stage, total_rows
        self.parts_dir = self.folder / f".{stage}.parts-{uuid.uuid4().hex[:8]}"
        self._parts: dict[str, list[Path]] = {}
        self._arrays: dict[str, _ArrayFile] = {}
        self.batches = 0
        self.folder.mkdir(parents=True, exist_ok=True)
        # Held from the first batch to the manifest, as write_stage holds it for its whole write.
        self._lock = contextlib.ExitStack()
        self._lock.enter_context(outputs.stage_lock(self.folder, stage))
        outputs.invalidate(self.folder, stage)
        for stale in self.folder.glob(f".{stage}.parts-*"):  # left by a process killed mid-stage
            shutil.rmtree(stale, ignore_errors=True)
        self.parts_dir.mkdir(parents=True)

    def add(self, data: StageData) -> None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        for key, frame in data.tables.items():
            part = self.parts_dir / f"{key}.{self.batches:06d}.parquet"
            self._parts.setdefault(key, []).append(part)
            with naming(outputs.file_path(self.folder, self.stage, key, ".parquet")):
                pq.write_table(pa.Table.from_pandas(frame, preserve_index=False), part)
        for key, array in data.arrays.items():
            self._add_rows(key, np.asarray(array))
        self.batches += 1
        _release_arrow_memory()

    def _add_rows(self, key: str, array: np.ndarray) -> None:
        """Append a batch's rows to the .npy being written. Plain writes, not a memory map: mapped
        file pages count in the process's RSS, written ones are the kernel's page cache."""
        path = outputs.file_path(self.folder, self.stage, key, ".npy")
        if key not in self._arrays:
            tmp = temp_name(path)
            shape = (self.total_rows, *array.shape[1:])
            with naming(path):
                handle = open(tmp, "wb")
            self._arrays[key] = _ArrayFile(tmp, handle, array.dtype, shape)  # from here on discard() removes it
            with naming(path):
                np.lib.format.write_array_header_1_0(handle, {"descr": np.lib.format.dtype_to_descr(array.dtype),
                                                              "fortran_order": False, "shape": shape})
        target = self._arrays[key]
        if array.dtype != target.dtype or array.shape[1:] != target.shape[1:] or target.rows + len(array) > target.shape[0]:
            raise StageError(f"{self.stage}: batch {self.batches + 1} gives array '{key}' of {array.dtype} "
                             f"{array.shape} after {target.rows} rows; the stream expects {target.dtype} rows of "
                             f"shape {target.shape[1:]}, {target.shape[0]} in all")
        with naming(path):
            target.handle.write(np.ascontiguousarray(array).tobytes())
        target.rows += len(array)

    def finish(self) -> dict[str, int]:
        """Assemble the parts into the stage's files and write the manifest, all under temp names, then
        publish them together; {file name: bytes}. On failure nothing of the stage is left in place."""
        sizes: dict[str, int] = {}
        with PublishGroup() as files:
            for key, parts in self._parts.items():
                staged = files.stage(outputs.file_path(self.folder, self.stage, key, ".parquet"), _assembler(parts))
                sizes[staged.path.name] = staged.size
            for key, target in self._arrays.items():
                if target.rows != target.shape[0]:
                    raise StageError(f"{self.stage}: array '{key}' got {target.rows} rows from the batches, "
                                     f"expected {target.shape[0]}")
                path = outputs.file_path(self.folder, self.stage, key, ".npy")
                with naming(path):
                    target.handle.flush()
                    os.fsync(target.handle.fileno())
                    size = os.fstat(target.handle.fileno()).st_size  # this writer's file, as atomic_write counts it
                    target.handle.close()
                sizes[files.adopt(target.tmp, path, size).path.name] = size
            text = outputs.manifest_text(self.stage, list(self._parts), list(self._arrays), sizes)
            files.stage(outputs.manifest_path(self.folder, self.stage),
                        lambda tmp: tmp.write_text(text, encoding="utf-8"))
            files.publish_all()
        self._arrays.clear()
        self.discard()
        return sizes

    def discard(self) -> None:
        """Remove the parts and any unfinished array (after finish, or when the stage failed)."""
        for target in self._arrays.values():
            try:
                target.handle.close()  # flushes what is buffered: fails again on a full disk
            except OSError:
                pass
            target.tmp.unlink(missing_ok=True)
        self._arrays.clear()
        shutil.rmtree(self.parts_dir, ignore_errors=True)
        self._lock.close()


def _release_arrow_memory() -> None:
    """Hand the batch's freed Arrow buffers back to the OS: Arrow's allocator otherwise keeps them for
    later, and a stream of batches would show up as RSS growing with the partition."""
    import pyarrow as pa

    pa.default_memory_pool().release_unused()


def _assembler(parts: list[Path]):
    """A writer that concatenates Parquet parts into a file (one row group per part), streaming one
    part at a time."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    schemas = [pq.read_schema(p) for p in parts]
    schema = pa.unify_schemas(schemas, promote_options="permissive").with_metadata(schemas[0].metadata)

    def write(tmp: Path) -> None:
        with pq.ParquetWriter(tmp, schema) as writer:
            for part in parts:
                table = pq.read_table(part, use_threads=False)  # no reader threads: their arenas add RSS
                writer.write_table(table.cast(schema) if not table.schema.equals(schema) else table,
                                   row_group_size=max(table.num_rows, 1))
                del table
                _release_arrow_memory()

    return write


@dataclass
class _Totals:
    """The batches' results folded into the one result an all-at-once run returns."""

    items_in: int = 0
    items_out: int = 0
    skipped: int = 0
    extra: dict = field(default_factory=dict)
    counters: dict[int, ApiCounters] = field(default_factory=dict)  # by identity: a model's running counters
    quality: dict = field(default_factory=dict)

    def add(self, result: StageResult) -> None:
        self.items_in += result.items_in
        self.items_out += result.items_out
        self.skipped += result.skipped
        if result.api is not None:
            # A model that keeps counting across calls hands back the same object each batch; a
            # backend that counts per call hands back a new one. Keep each object once.
            self.counters[id(result.api)] = result.api
        if not self.extra:
            self.extra = dict(result.extra)
        else:
            for key in SUMMED_EXTRA:
                if key in result.extra:
                    self.extra[key] = self.extra.get(key, 0) + result.extra[key]
            if result.extra.get("problems"):
                self.extra["problems"] = (self.extra.get("problems", []) + result.extra["problems"])[:MAX_PROBLEMS_KEPT]
        self.quality = result.quality or self.quality

    def api(self) -> ApiCounters | None:
        if not self.counters:
            return None
        if len(self.counters) == 1:
            return next(iter(self.counters.values()))
        total = ApiCounters()
        for counters in self.counters.values():
            total.merge(counters)
        return total


def _shifted(progress, offset: int, total: int):
    if progress is None:
        return None
    return lambda done, _batch_total: progress(offset + done, total)


def run_streamed(stage: str, backend, folder: Path, scale_n: int, batch_size: int, progress=None
                 ) -> tuple[StageResult, dict[str, int]]:
    """Run `stage` over the partition in batches of `batch_size` rows; return (result, {file: bytes}).

    The result has what an all-at-once run reports (items, skipped, API counters, extra) plus
    extra.stream_batch_size and extra.batches; its data is empty (the output is on disk already).
    """
    if batch_size < 1:
        raise StageError(f"{stage}: stream_batch_size must be at least 1 (got {batch_size})")
    if stage == "conversations":
        total = scale_n
        batches = ((offset, min(batch_size, total - offset), {}) for offset in range(0, total, batch_size))
    elif stage in STREAM_SOURCE:
        source, key = STREAM_SOURCE[stage]
        total = outputs.stage_rows(folder, source, key)
        batches = _upstream_batches(folder, source, key, batch_size)
    else:
        raise StageError(f"stage '{stage}' cannot be streamed; streamed stages: {', '.join(STREAMED_STAGES)}")
    writer = StreamedOutput(folder, stage, total)
    totals = _Totals()
    try:
        for offset, count, upstream in batches:
            inputs = StageInputs(count, upstream, progress=_shifted(progress, offset, total), offset=offset)
            result = backend.run(stage, inputs)
            writer.add(result.data)
            totals.add(result)
            del result, inputs, upstream  # this batch's rows are on disk: nothing of it stays resident
        sizes = writer.finish()
    except BaseException:
        writer.discard()
        raise
    extra = {**totals.extra, "stream_batch_size": batch_size, "batches": writer.batches}
    result = StageResult(StageData(), items_in=totals.items_in, items_out=totals.items_out, skipped=totals.skipped,
                         quality=totals.quality, api=totals.api(), extra=extra)
    return result, sizes


def _upstream_batches(folder: Path, source: str, key: str, batch_size: int):
    offset = 0
    for frame in outputs.iter_table(folder, source, key, batch_size):
        yield offset, len(frame), {source: StageData(tables={key: frame})}
        offset += len(frame)
