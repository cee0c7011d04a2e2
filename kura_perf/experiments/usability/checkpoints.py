"""Kura's checkpoint formats, measured through Kura's own checkpoint managers.

Kura 0.5.4 ships JSONLCheckpointManager, ParquetCheckpointManager and HFDatasetCheckpointManager;
its docs call the datasets one faster without a benchmark. For each format and scale, one fresh
subprocess (so one format's allocations never inflate another's peak) builds Kura's objects from the
corpus (kura_objects), then for each kind (conversations, summaries, clusters, projected clusters):

  write   manager.save_checkpoint(kind, objects): wall s, peak RSS (kernel high-water mark, reset
          before the call), bytes the call added to the checkpoint folder
  reload  a *new* manager on the same folder (as a resumed pipeline makes one) calls
          load_checkpoint(kind, ModelClass): wall s, peak RSS, items back, and the share of items
          equal to what was saved (model_dump equality)

A call that raises is recorded as `failed` with Kura's error. Kura's Parquet and datasets managers
catch their own load errors, log them and return None (so a pipeline silently recomputes): that is
recorded as `failed` too, with the message Kura logged. A reload that differs from what was saved is
`lossy`. The folder's `du -sb` and the worker's RSS sampled by the parent (psutil) are the independent
cross-checks. Rows go to the store table `checkpoint_results`.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Callable, Sequence

import psutil

from kura_perf.errors import KuraPerfError
from kura_perf.experiments.usability.records import new_row
from kura_perf.meter import memory
from kura_perf.scales import scale_count

FORMATS: dict[str, str] = {  # our name -> Kura's class in kura.checkpoints
    "jsonl": "JSONLCheckpointManager",
    "parquet": "ParquetCheckpointManager",
    "hf_datasets": "HFDatasetCheckpointManager",
}
WORKER_TIMEOUT_S = 1800.0
_RESULT_MARK = "KURA_PERF_CHECKPOINT_ROWS "


class _KuraLogErrors(logging.Handler):
    """Collects what Kura logs at ERROR while a call runs (its managers log load failures and return None)."""

    def __init__(self):
        super().__init__(level=logging.ERROR)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


def _run(call: Callable[[], object]) -> tuple[object, float, float, float, str | None, list[str]]:
    """(result, wall s, rss at start MB, peak MB, error, Kura's logged errors) of one checkpoint call."""
    handler = _KuraLogErrors()
    kura_logger = logging.getLogger("kura")
    kura_logger.addHandler(handler)
    memory.reset_peak()
    start = memory.rss_mb()
    t0 = time.perf_counter()
    result, error = None, None
    try:
        result = call()
    except Exception as exc:  # noqa: BLE001 - a format that fails is a finding, recorded with Kura's error
        error = f"{type(exc).__name__}: {exc}"
    wall = time.perf_counter() - t0
    peak = max(memory.read_peak_mb() or 0.0, memory.rss_mb())
    kura_logger.removeHandler(handler)
    return result, wall, start, peak, error, handler.messages


def _apparent_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def _equal_share(saved: list, loaded: list) -> tuple[float, str | None]:
    """(share of items reloaded equal to those saved, which fields differed and how, e.g. for one item)."""
    if not saved:
        return 1.0, None
    same, example = 0, None
    for a, b in zip(saved, loaded):
        da, db = a.model_dump(), b.model_dump()
        if da == db:
            same += 1
        elif example is None:
            diffs = [f"{k}: saved {da.get(k)!r:.60} -> reloaded {db.get(k)!r:.60}" for k in sorted(set(da) | set(db))
                     if da.get(k) != db.get(k)]
            example = "; ".join(diffs[:3])
    return same / len(saved), example


def _manager(fmt: str, folder: Path):
    import kura.checkpoints as checkpoints

    return getattr(checkpoints, FORMATS[fmt])(str(folder))


def measure_format(fmt: str, scale: str, folder: Path, seed: int = 0, n: int | None = None) -> list[dict]:
    """One row per kind for one format at one scale (n conversations: the scale's unless given),
    measured in this process (the worker's body)."""
    from kura_perf.experiments.usability.kura_objects import KINDS, MODEL_CLASS, build_kura_objects  # kura: optional

    n = scale_count(scale) if n is None else n
    objects = build_kura_objects(n, seed=seed)
    folder.mkdir(parents=True, exist_ok=True)
    writer = _manager(fmt, folder)
    rows = []
    for kind in KINDS:
        before = _apparent_bytes(folder)
        _, w_s, w_start, w_peak, w_error, w_logged = _run(lambda kind=kind: writer.save_checkpoint(kind, objects[kind]))
        row = {"format": fmt, "manager_class": FORMATS[fmt], "scale": scale, "scale_n": n, "kind": kind,
               "items": len(objects[kind]), "write_s": w_s, "write_rss_start_mb": w_start,
               "write_peak_rss_mb": w_peak, "bytes": _apparent_bytes(folder) - before}
        row["write_error"] = w_error or ("; ".join(w_logged) if w_logged else None)
        if w_error:
            row.update(status="failed", read_status="skipped", error_message=f"write: {w_error}")
            rows.append(row)
            continue
        reader = _manager(fmt, folder)
        loaded, r_s, r_start, r_peak, r_error, r_logged = _run(
            lambda kind=kind, reader=reader: reader.load_checkpoint(kind, MODEL_CLASS[kind]))
        row.update(read_s=r_s, read_rss_start_mb=r_start, read_peak_rss_mb=r_peak,
                   items_read=len(loaded) if isinstance(loaded, list) else None)
        if r_error:
            row.update(read_status="failed", read_error=r_error)
        elif loaded is None:
            why = "; ".join(r_logged) or "no error logged"
            row.update(read_status="failed", read_error=f"load_checkpoint returned None (Kura logged: {why})")
        else:
            share, differs = _equal_share(objects[kind], loaded)
            row.update(roundtrip_equal=share, read_error=differs or "; ".join(r_logged) or None,
                       read_status="success" if share == 1.0 and len(loaded) == len(objects[kind]) else "lossy")
        row["status"] = "success" if row["read_status"] == "success" else (
            "lossy" if row["read_status"] == "lossy" else "failed")
        if row["status"] != "success":
            row["error_message"] = (f"reload: {row['read_error']}" if row["status"] == "failed" else
                                    f"reload: {1 - row['roundtrip_equal']:.0%} of items differ from those saved "
                                    f"(e.g. {row['read_error']})")
        rows.append(row)
    return rows


def _du_bytes(folder: Path) -> int | None:
    try:
        out = subprocess.run(["du", "-sb", str(folder)], capture_output=True, text=True, timeout=60)
        return int(out.stdout.split()[0]) if out.returncode == 0 else None
    except (OSError, ValueError, IndexError, subprocess.SubprocessError):
        return None


def _sample_max_rss_mb(proc: subprocess.Popen, stop: threading.Event, out: list[float]) -> None:
    """The worker's RSS as the parent sees it (psutil, every 20 ms): a peak independent of the worker's
    own VmHWM readings (which reset the kernel's mark, so ru_maxrss / time -v would only see the last call)."""
    try:
        p = psutil.Process(proc.pid)
        while not stop.wait(0.02):
            out.append(p.memory_info().rss / 2**20)
    except psutil.Error:
        pass


def _worker(fmt: str, scale: str, folder: Path, seed: int, timeout_s: float) -> tuple[list[dict], float | None, str]:
    """Run one format x scale in a fresh interpreter; (rows, its sampled max RSS MB, error)."""
    command = [sys.executable, "-m", "kura_perf.experiments.usability.checkpoints", "--worker", "--format", fmt,
               "--scale", scale, "--dir", str(folder), "--seed", str(seed)]
    env = {**os.environ, "HF_DATASETS_OFFLINE": "1", "HF_HUB_OFFLINE": "1", "TQDM_DISABLE": "1"}
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                            start_new_session=True)
    samples: list[float] = []
    stop = threading.Event()
    sampler = threading.Thread(target=_sample_max_rss_mb, args=(proc, stop, samples), daemon=True)
    sampler.start()
    try:
        stdout, stderr = proc.communicate(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        return [], None, f"the worker did not finish within {timeout_s:.0f} s"
    finally:
        stop.set()
        sampler.join()
    rows = []
    for line in stdout.splitlines():
        if line.startswith(_RESULT_MARK):
            rows = json.loads(line[len(_RESULT_MARK):])
    if proc.returncode != 0 or not rows:
        tail = " / ".join(line.strip() for line in stderr.strip().splitlines()[-5:] if line.strip())
        return rows, None, f"worker exited with code {proc.returncode}: {tail[:1500]}"
    return rows, max(samples) if samples else None, ""


def run_checkpoint_benchmark(scales: Sequence[str], formats: Sequence[str] = tuple(FORMATS), *,
                             workdir: Path, run_id: str | None = None, seed: int = 0,
                             timeout_s: float = WORKER_TIMEOUT_S, log=None) -> list[dict]:
    """Every format at every scale, each in its own worker; rows ready for the store (always one
    or more per format x scale: a worker that crashes or times out is a `failed` row)."""

    unknown = [f for f in formats if f not in FORMATS]
    if unknown:
        raise KuraPerfError(f"unknown checkpoint format(s) {unknown}; expected some of {', '.join(FORMATS)}")
    for scale in scales:
        scale_count(scale)
    run_id = run_id or uuid.uuid4().hex
    rows = []
    for scale in scales:
        for fmt in formats:
            folder = Path(workdir) / f"{run_id[:12]}-{fmt}-{scale}"
            shutil.rmtree(folder, ignore_errors=True)
            worker_rows, max_rss, error = _worker(fmt, scale, folder, seed, timeout_s)
            du = _du_bytes(folder) if folder.exists() else None
            if error and not worker_rows:
                worker_rows = [{"format": fmt, "manager_class": FORMATS[fmt], "scale": scale,
                                "scale_n": scale_count(scale), "kind": "all", "status": "failed",
                                "error_message": error}]
            for r in worker_rows:
                rows.append(new_row(run_id, **r, dir_du_bytes=du, process_max_rss_mb=max_rss))
            shutil.rmtree(folder, ignore_errors=True)
            if log:
                ok = [r for r in worker_rows if r.get("status") == "success"]
                log(f"checkpoints {fmt} @ {scale}: {len(ok)}/{len(worker_rows)} kinds round-trip"
                    + (f"; {error}" if error else ""))
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="one checkpoint-format worker (used by kura-perf checkpoints)")
    parser.add_argument("--worker", action="store_true", required=True)
    parser.add_argument("--format", required=True, choices=list(FORMATS))
    parser.add_argument("--scale", required=True)
    parser.add_argument("--dir", required=True)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    rows = measure_format(args.format, args.scale, Path(args.dir), seed=args.seed)
    print(_RESULT_MARK + json.dumps(rows), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
