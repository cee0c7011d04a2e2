"""Fan-out of one partition's embeddings: contiguous row shards, each embedded and metered on its
own (on whichever worker picks it up), then merged in shard order into the ordinary `embeddings`
stage output, so the downstream stages cannot tell a sharded run from a single-process one.

Records: each shard attempt is a row of `shard_runs` (the stage_runs columns plus shard_index,
shard_count, row range, attempt_id); the merge writes the stage's `stage_runs` record, whose wall
time is the critical path (the busiest worker process's shards + merge) and whose CPU time is the
sum over shards + merge.

Faults: an attempt keeps an in-flight marker beside its output (store/liveness.py's Heartbeat, the
same one a stage keeps, refreshed by the meter's sampler at most every HEARTBEAT_S seconds) until it
finishes. Shards and the merge are measured, classified and recorded by pipeline/metered.py, as a
whole stage is: a memory error is a breaking point, Ctrl-C is recorded as interrupted. Another delivery of the same task (Celery hands a task out again when
its worker died, or when a step outlives the broker's visibility timeout) first settles the earlier
attempt: finished -> return its record (kept beside the output); still beating -> wait for it;
heartbeat stopped -> record it as 'died', naming the lost worker, and run the shard. A shard's
success record has a fixed file name per run and shard, so nothing is counted twice.
No Dagster import here: `kura_perf/defs/cluster.py` wires these functions into an op job.
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from dataclasses import asdict, dataclass
from datetime import datetime, timezone

import numpy as np
import pandas as pd

from kura_perf.backends import get_backend
from kura_perf.errors import StageError
from kura_perf.files import outputs
from kura_perf.files.atomic import atomic_write_text
from kura_perf.files.outputs import StageData
from kura_perf.meter.host import worker_identity
from kura_perf.pipeline.metered import metered_run
from kura_perf.pipeline.records import work_figures
from kura_perf.pipeline.runner import StageRun
from kura_perf.scales import scale_count
from kura_perf.stages.base import StageInputs, StageResult
from kura_perf.store.record import StageRecord
from kura_perf.store.stage_records import unfinished_record
from kura_perf.store.writer import write_record

log = logging.getLogger("kura_perf")

STAGE = "embeddings"
HEARTBEAT_S = 2.0


@dataclass(frozen=True)
class ShardSpec:
    """Rows [start, stop) of the partition's summaries: shard `index` of `count`."""

    index: int
    count: int
    start: int
    stop: int

    @property
    def key(self) -> str:
        return f"shard-{self.index:04d}"

    def as_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "ShardSpec":
        return cls(**data)


def plan_shards(n_rows: int, shards: int) -> list[ShardSpec]:
    """`shards` contiguous, near-equal row ranges (fewer if there are fewer rows than shards)."""
    if shards < 1:
        raise StageError(f"embeddings: shards must be at least 1, got {shards}")
    count = max(1, min(shards, n_rows))
    bounds = np.linspace(0, n_rows, count + 1).round().astype(int)
    return [ShardSpec(i, count, int(bounds[i]), int(bounds[i + 1])) for i in range(count)]


def shard_folder(run: StageRun):
    """Where one run's shard outputs and in-flight markers live (beside the partition's outputs)."""
    return run.folder / "embeddings.shards" / run.run_id


def _marker(run: StageRun, spec: ShardSpec):
    return shard_folder(run) / f"{spec.key}.inflight.json"


def _done(run: StageRun, spec: ShardSpec):
    """The finished shard's record, kept after the merge so a late duplicate delivery can return it."""
    return shard_folder(run) / f"{spec.key}.record.json"


def _write_json(path, body: dict, durable: bool = True) -> None:
    """durable=False for heartbeats: rewritten every few seconds, worthless after a reboot."""
    text = json.dumps(body, default=lambda v: v.isoformat() if isinstance(v, datetime) else str(v))
    if hasattr(path, "with_name"):  # local: readers never see half a file
        atomic_write_text(path, text, durable=durable)
    else:  # an object store PUT is whole or absent
        path.write_text(text)


def _read_json(path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _load_record(path) -> dict | None:
    record = _read_json(path)
    if record:
        for key in ("started_at", "finished_at"):
            if record.get(key):
                record[key] = datetime.fromisoformat(record[key])
    return record


def _shard_fields(spec: ShardSpec, attempt_id: str) -> dict:
    return {"shard_index": spec.index, "shard_count": spec.count, "row_start": spec.start, "row_stop": spec.stop,
            "attempt_id": attempt_id}


def _record_died_attempt(run: StageRun, spec: ShardSpec, left: dict) -> dict:
    """An attempt whose heartbeat stopped before it finished: its worker died. Recorded once (fixed name)."""
    fields = {**left["fields"], "worker": left.get("worker") or left["fields"].get("worker")}
    started = datetime.fromtimestamp(left["started_epoch"], timezone.utc)
    last_beat = datetime.fromtimestamp(left["beat_epoch"], timezone.utc).isoformat()
    record = unfinished_record(
        fields,
        record_id=uuid.uuid5(uuid.NAMESPACE_URL, f"{run.run_id}/{spec.key}/{left['attempt_id']}").hex,
        status="died", error_type="WorkerLost",
        error_message=(f"worker {fields['worker']} stopped during {spec.key} (started {left['started_at']}, "
                       f"last heartbeat {last_beat}); the shard was handed to {worker_identity()}"),
        started_at=started, metered=False, items_in=spec.stop - spec.start,
        peak_rss_mb=left.get("peak_rss_mb"), peak_method="heartbeat",
    ).as_row() | _shard_fields(spec, left["attempt_id"])
    write_record(run.paths.metrics, "shard_runs", record, name=f"{run.run_id}-{spec.key}-{left['attempt_id']}")
    log.warning("%s %s: previous attempt on %s died mid-step; recorded, running it again", STAGE, spec.key,
                fields["worker"])
    return record


def _heartbeat_age_s(left: dict) -> float:
    return time.time() - float(left.get("beat_epoch") or left["started_epoch"])


def _settle_earlier_attempt(run: StageRun, spec: ShardSpec) -> dict | None:
    """Before running a shard: its finished record if an earlier delivery of this task already did it
    (the broker hands a task out again when a step outlives its visibility timeout); wait while an
    earlier attempt is still beating; record it as died once its heartbeat stops. None: run it."""
    marker, done = _marker(run, spec), _done(run, spec)
    while True:
        if done.is_file():
            return _load_record(done)
        left = _read_json(marker) if marker.is_file() else None
        if left is None:
            return None
        if _heartbeat_age_s(left) > run.settings.shard_stale_s:  # a dead attempt's marker
            _record_died_attempt(run, spec, left)
            marker.unlink(missing_ok=True)
            return None
        time.sleep(min(HEARTBEAT_S, 1.0))


def run_embedding_shard(run: StageRun, spec: ShardSpec) -> dict:
    """Embed rows [spec.start, spec.stop) of the partition's summaries, metered; store the vectors in
    the run's shard folder and the shard record in `shard_runs`; return the record."""
    folder = shard_folder(run)
    folder.mkdir(parents=True, exist_ok=True)
    if (earlier := _settle_earlier_attempt(run, spec)) is not None:
        log.info("%s %s: already done by %s (a repeated delivery); not run again", STAGE, spec.key,
                 earlier.get("worker"))
        return earlier
    attempt_id = uuid.uuid4().hex[:12]
    backend = run.backend or get_backend(run.profile, run.settings)
    rows: list[dict] = []

    def body(progress) -> tuple[StageResult, int]:
        summaries = outputs.read_stage(run.folder, "summaries").tables["main"]
        if spec.stop > len(summaries):
            raise StageError(f"embeddings {spec.key}: rows {spec.start}-{spec.stop} but the summaries "
                             f"table has {len(summaries)} rows")
        part = summaries.iloc[spec.start:spec.stop].reset_index(drop=True)
        inputs = StageInputs(scale_count(run.scale), {"summaries": StageData(tables={"main": part})},
                             progress=progress)
        result = backend.run(STAGE, inputs)
        return result, sum(outputs.write_stage(folder, spec.key, result.data).values())

    def store(record: StageRecord) -> None:
        # A shard_runs row: the stage record's columns plus the shard's (per-level quality: none for a shard).
        row = record.as_row() | _shard_fields(spec, attempt_id)
        # One success record per run and shard (a repeated task replaces it); failed attempts each keep theirs.
        ok = record.status == "success"
        write_record(run.paths.metrics, "shard_runs", row,
                     name=f"{run.run_id}-{spec.key}" if ok else f"{run.run_id}-{spec.key}-{attempt_id}")
        if ok:
            _write_json(_done(run, spec), row)
        rows.append(row)

    metered_run(run, body, backend=backend, label=f"{STAGE} {spec.key}", close_backend=run.backend is None,
                store=store, marker=_marker(run, spec),
                marker_extra={"attempt_id": attempt_id, "worker": worker_identity()},
                beat_s=HEARTBEAT_S)
    record = rows[-1]
    log.info("%s %s: %d rows in %.2f s on %s", STAGE, spec.key, spec.stop - spec.start, record["wall_s"],
             record["worker"])
    return record


def merge_embedding_shards(run: StageRun, specs: list[ShardSpec], shard_records: list[dict]) -> StageRecord:
    """Concatenate the shards in index order into the partition's `embeddings` output; write the stage
    record (sums over the shards) into the store, as `run_stage` does; return it."""
    specs = sorted(specs, key=lambda s: s.index)
    if [s.index for s in specs] != list(range(len(specs))) or any(s.count != len(specs) for s in specs):
        raise StageError(f"embeddings: shards {[s.index for s in specs]} do not cover 0..{len(specs) - 1}")
    folder = shard_folder(run)

    def body(progress) -> tuple[StageResult, int]:
        parts = [outputs.read_stage(folder, spec.key) for spec in specs]
        for spec, part in zip(specs, parts):
            rows = len(part.arrays["main"])
            if rows != spec.stop - spec.start:
                raise StageError(f"embeddings {spec.key}: {rows} vectors for rows {spec.start}-{spec.stop}")
        ids = pd.concat([p.tables["ids"] for p in parts], ignore_index=True)
        vectors = np.concatenate([p.arrays["main"] for p in parts], axis=0)
        data = StageData(tables={"ids": ids}, arrays={"main": vectors})
        written = sum(outputs.write_stage(run.folder, STAGE, data).values())
        return StageResult(data, items_in=len(vectors), items_out=len(vectors)), written

    backend_name = next((r.get("backend") for r in shard_records if r.get("backend")), run.profile.backend)
    record = metered_run(run, body, backend_name=backend_name, label=f"{STAGE} merge", timeout=False,
                         adjust=lambda merge: merge.replace(**sum_shards(shard_records, merge)))
    _remove_shard_data(folder, specs)
    return record


def sum_shards(shard_records: list[dict], merge: StageRecord) -> dict:
    """The stage figures from its shards (shard_runs rows) and the merge's own record: wall = the
    critical path (the busiest worker process's shards, back to back, + merge; with a free worker per
    shard, the slowest shard + merge), CPU = sum, peak = the largest process peak. Queueing and step
    start-up are left out (elapsed_s in `extra` has them). Returns the merge record's fields to replace."""
    shards = sorted(shard_records, key=lambda r: r["shard_index"])

    def total(key):
        return sum(float(r.get(key) or 0.0) for r in shards) + float(getattr(merge, key) or 0.0)

    def add(key):
        values = [r.get(key) for r in shards if r.get(key) is not None]
        return int(sum(values)) if values else None

    # A worker process runs its shards one after another: the busiest process bounds the fan-out.
    per_process: dict[str, float] = {}
    for r in shards:
        key = r.get("worker") or f"shard {r['shard_index']}"
        per_process[key] = per_process.get(key, 0.0) + float(r["wall_s"] or 0.0)
    busiest = max(per_process.values(), default=0.0)
    wall = busiest + float(merge.wall_s or 0.0)
    peaks = [p for p in [*(r.get("peak_rss_mb") for r in shards), merge.peak_rss_mb] if p is not None]
    items = sum(int(r.get("items_in") or 0) for r in shards)
    started = min((r["started_at"] for r in shards), default=merge.started_at)
    extra = json.loads(merge.extra or "{}") | {
        "shards": len(shards),
        "workers": sorted({r["worker"].split(" pid=")[0] for r in shards if r.get("worker")}),
        "shard_wall_s": [round(float(r["wall_s"] or 0.0), 3) for r in shards],
        "shard_cpu_s": [round(float(r.get("cpu_user_s") or 0) + float(r.get("cpu_sys_s") or 0), 3) for r in shards],
        "merge_wall_s": round(float(merge.wall_s or 0.0), 3),
        # first shard start to merge end: includes queueing and step start-up, which wall_s leaves out
        "elapsed_s": round((merge.finished_at - started).total_seconds(), 3),
    }
    fields = {
        "wall_s": wall, "cpu_user_s": total("cpu_user_s"), "cpu_sys_s": total("cpu_sys_s"),
        "meter_cpu_s": total("meter_cpu_s"), "peak_rss_mb": max(peaks) if peaks else None,
        "items_in": items if shards else merge.items_in,
        "items_per_s": items / wall if shards and wall > 0 else merge.items_per_s,
        "started_at": started, "extra": json.dumps(extra),
    }
    # Compile, start-up and set-up run in each shard's process side by side: the longest shard's plus
    # the merge's is what the fan-out paid; stage_work_s is recomputed against the summed wall.
    for key in ("jit_compile_s", "startup_s", "setup_s"):
        values = [float(r[key]) for r in shards if r.get(key) is not None]
        mine = getattr(merge, key)
        fields[key] = (max(values, default=0.0) + float(mine or 0.0)) if values or mine is not None else None
    fields |= work_figures(wall, fields["jit_compile_s"], fields["startup_s"])
    for key in ("api_calls", "api_errors", "api_429s", "api_retries", "api_timeouts", "tokens_in", "tokens_out"):
        fields[key] = add(key)
    costs = [r["cost_usd"] for r in shards if r.get("cost_usd") is not None]
    fields["cost_usd"] = sum(costs) if costs else None
    # Host load: the stage was as disturbed as its most disturbed part (shards side by side on one host
    # count each other as load: a fan-out's timings are contended by design, and the record says so).
    shares = [float(v) for v in [*(r.get("host_contention") for r in shards), merge.host_contention] if v is not None]
    flags = [v for v in [*(r.get("contended") for r in shards), merge.contended] if v is not None]
    fields["host_contention"] = max(shares) if shares else None
    fields["host_other_cpu_s"] = total("host_other_cpu_s") if any(r.get("host_other_cpu_s") is not None
                                                                   for r in shards) else merge.host_other_cpu_s
    fields["contended"] = any(bool(v) for v in flags) if flags else None
    return fields


def _remove_shard_data(folder, specs: list[ShardSpec]) -> None:
    """Shard vectors are intermediate (the merged output is the stage's storage figure); the small
    per-shard record files stay, so a late repeated delivery finds its shard done."""
    for spec in specs:
        for path in [*folder.glob(f"{spec.key}.*.npy"), *folder.glob(f"{spec.key}.npy"),
                     *folder.glob(f"{spec.key}.*.parquet"), *folder.glob(f"{spec.key}.manifest.json")]:
            try:
                path.unlink()
            except OSError as exc:  # leftover shard files waste space but lose nothing
                log.warning("could not remove shard file %s: %s", path, exc)
