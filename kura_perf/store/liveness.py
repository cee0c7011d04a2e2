"""A death always leaves a trace: `running` markers, their heartbeat, and the reaper that turns the
markers of dead processes into `died` records.

Before a stage starts, the runner writes data/metrics_running/<run_id>/<stage>.json: status running,
the process (pid, its start time, host, boot id), the record's identifying fields, and, refreshed
about once a second by the meter's sampler, the last peak RSS and the progress (done/total). Once the
stage has written its own record into the store, the marker is removed. A CLI run also keeps a run
marker, data/metrics_running/<run_id>.json (the stages planned, those recorded), from before its first
stage until it returns: a kill between two stages, when no stage marker exists, is recorded too.

A process killed by SIGKILL or the kernel's OOM killer runs none of that. The next kura-perf command
(any of them, and the Dagster sensor) calls `reap`: a marker whose process is gone (same host and boot;
the pid is dead or now belongs to a process started later) becomes a `died` record in stage_runs (a
run marker: for the first planned stage without a record),
with the last peak, the progress and a projection, and the reason the kernel log gives when it is
readable (OOM killer), else "process gone". No Dagster import here: defs/liveness.py marks the
Dagster runs of those processes failed.
"""

from __future__ import annotations

import json
import logging
import os
import re
import socket
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import psutil

from kura_perf.files.atomic import atomic_write_text, claim
from kura_perf.meter.projection import Progress, project
from kura_perf.store import query
from kura_perf.store.quarantine import quarantine
from kura_perf.store.record import StageRecord
from kura_perf.store.stage_records import unfinished_record, write_stage_record

log = logging.getLogger("kura_perf")

RUNNING, FINISHED, DIED = "running", "finished", "died"
UNSTORED = "unstored"  # the record is in the marker: the store could not take it (Heartbeat.keep)
HEARTBEAT_S = 1.0


def _boot_id() -> str | None:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return None


def process_identity(pid: int | None = None) -> dict:
    """What tells this process apart from any later one with the same pid.

    pid_since_boot is the start time in seconds after boot (/proc/<pid>/stat's starttime): it never
    changes. pid_started (epoch seconds) is boot time + that, and the boot time Linux reports moves
    whenever the wall clock is stepped (seen here: a live 50K run judged "pid reused" after a clock
    correction), so it is kept for display and for markers written before pid_since_boot existed."""
    pid = pid or os.getpid()
    return {"pid": pid, "pid_started": psutil.Process(pid).create_time(), "pid_since_boot": _since_boot(pid),
            "host": socket.gethostname(), "boot_id": _boot_id()}


def _since_boot(pid: int) -> float | None:
    """Seconds from boot to the process's start (field 22 of /proc/<pid>/stat, in clock ticks); None
    off Linux. Raises psutil.NoSuchProcess when the process is gone, as psutil would."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        if Path("/proc/self/stat").exists():
            raise psutil.NoSuchProcess(pid) from None
        return None
    except OSError:
        return None
    fields = stat[stat.rindex(")") + 2:].split()  # after "pid (comm) ": comm may hold spaces and ')'
    return int(fields[19]) / os.sysconf("SC_CLK_TCK")


# Start times read from /proc are in clock ticks (1/100 s): the same process always reads the same.
SAME_START_S = 0.05
# Epoch start times move with the wall clock (NTP steps, a VM's clock catching up): only a gap far
# beyond any clock correction means another process (pids are reused only after wrapping around).
SAME_START_EPOCH_S = 120.0


def is_gone(identity: dict) -> bool | None:
    """True when the process is certainly gone, False when it runs, None when we cannot tell (another host)."""
    if identity.get("host") != socket.gethostname():
        return None
    if identity.get("boot_id") and _boot_id() and identity["boot_id"] != _boot_id():
        return True  # the machine rebooted since
    try:
        proc = psutil.Process(int(identity["pid"]))
        if proc.status() == psutil.STATUS_ZOMBIE:
            return True
        if identity.get("pid_since_boot") is not None:  # the same boot (checked above): exact
            since_boot = _since_boot(proc.pid)
            if since_boot is not None:
                return abs(since_boot - float(identity["pid_since_boot"])) > SAME_START_S
        return abs(proc.create_time() - float(identity["pid_started"])) > SAME_START_EPOCH_S  # pid reused
    except psutil.NoSuchProcess:
        return True
    except (psutil.Error, KeyError, TypeError, ValueError):
        return None


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, timezone.utc).isoformat()


def marker_path(running_dir: Path, run_id: str, stage: str) -> Path:
    return Path(running_dir) / run_id / f"{stage}.json"


class Heartbeat:
    """The running marker of one piece of measured work, kept fresh from the meter's sampler thread:
    the one heartbeat of kura_perf (a stage run, a shard attempt).

    fields: the stage record's identifying columns (run_id, stage, profile, ...), copied into the
    died record if it comes to that. progress: an object with `.latest` (a projection.Progress).
    path: where the marker goes (default: root/metrics_running/<run_id>/<stage>.json, which `reap`
    watches; a shard's marker sits beside its output, where another worker's delivery of the same
    task looks). extra: more keys for the marker's readers (a shard's attempt id).
    """

    def __init__(self, running_dir: Path | None, fields: dict, progress=None, interval_s: float = HEARTBEAT_S,
                 path=None, extra: dict | None = None):
        self.path = path if path is not None else marker_path(running_dir, fields["run_id"], fields["stage"])
        self.progress = progress
        self.interval_s = interval_s
        self._last_beat = float("-inf")
        self._lock = threading.Lock()
        now = time.time()
        self.body = {"status": RUNNING, **process_identity(), "started_at": _iso(now), "started_epoch": now,
                     "started_monotonic": time.monotonic(), "beat_epoch": now, "elapsed_s": 0.0,
                     "rss_start_mb": None, "peak_rss_mb": None, "progress": None, **(extra or {}), "fields": fields}
        if hasattr(self.path, "parent"):  # a local file (an object store has no folders to make)
            self.path.parent.mkdir(parents=True, exist_ok=True)
        self._write()

    def _write(self) -> None:
        with self._lock:
            text = json.dumps(self.body, default=str)
        if hasattr(self.path, "with_name"):  # local: readers never see half a file
            atomic_write_text(self.path, text, durable=False)
        else:  # an object store PUT is whole or absent
            self.path.write_text(text)

    def beat(self, elapsed_s: float, rss_mb: float, peak_mb: float) -> None:
        """Called on every sample; writes at most once per interval. Never raises (a full disk must not
        stop the sampler that enforces the memory limit)."""
        now = time.monotonic()
        if now - self._last_beat < self.interval_s:
            return
        self._last_beat = now
        latest = getattr(self.progress, "latest", None)
        with self._lock:
            self.body.update(beat_epoch=time.time(), elapsed_s=round(elapsed_s, 3), peak_rss_mb=round(peak_mb, 1),
                             progress=None if latest is None else latest.__dict__)
            if self.body["rss_start_mb"] is None:
                self.body["rss_start_mb"] = round(rss_mb, 1)
        try:
            self._write()
        except Exception:  # noqa: BLE001 - best effort; the next beat tries again
            pass

    def keep(self, record_json: str) -> bool:
        """The work's record could not go into the store (a full disk): keep it in the marker, which
        already has its room, so the reaper stores it once this process is gone (late, never lost).
        True when it was kept."""
        with self._lock:
            self.body.update(status=UNSTORED, record=record_json)
        try:
            self._write()
            return True
        except Exception:  # noqa: BLE001 - then the reaper records a death, with the marker's figures
            return False

    def close(self) -> None:
        """The work's own record is in the store: the marker has nothing left to cover. (A kill after
        this, between stages, is the run marker's to record.)"""
        try:
            self.path.unlink(missing_ok=True)
        except OSError as exc:  # a marker left behind is reaped as finished-or-died later, never fatal
            log.warning("could not remove the running marker %s: %s", self.path, exc)
            return
        if hasattr(self.path, "parent"):
            try:
                self.path.parent.rmdir()
            except OSError:
                pass


def clear(running_dir: Path, run_id: str, stage: str) -> None:
    path = marker_path(running_dir, run_id, stage)
    path.unlink(missing_ok=True)
    try:
        path.parent.rmdir()
    except OSError:
        pass


# -- the reaper -----------------------------------------------------------------------------------
@dataclass
class Death:
    run_id: str
    stage: str
    reason: str
    record: StageRecord | None  # None when the stage had already saved its own record


_OOM = re.compile(r"(?:Killed process|oom-kill:.*?,pid=)\s*(\d+)")


def kernel_oom_kills(since_monotonic: float | None = None) -> set[int] | None:
    """Pids the kernel's OOM killer killed (since a CLOCK_MONOTONIC time), or None when the kernel log
    is not readable here."""
    try:
        fd = os.open("/dev/kmsg", os.O_RDONLY | os.O_NONBLOCK)
    except OSError:
        return None
    pids: set[int] = set()
    try:
        for _ in range(200_000):
            try:
                line = os.read(fd, 8192).decode("utf-8", "replace")
            except BlockingIOError:
                break
            except BrokenPipeError:  # records overwritten while reading: go on with the next one
                continue
            except OSError:
                break
            header, _, message = line.partition(";")
            match = _OOM.search(message)
            if not match:
                continue
            parts = header.split(",")
            when_s = int(parts[2]) / 1e6 if len(parts) > 2 and parts[2].isdigit() else None
            if since_monotonic is None or when_s is None or when_s >= since_monotonic - 1:
                pids.add(int(match.group(1)))
    finally:
        os.close(fd)
    return pids


def _death_reason(marker: dict) -> tuple[str, str]:
    pid = marker["pid"]
    kills = kernel_oom_kills(marker.get("started_monotonic"))
    if kills is not None and pid in kills:
        return "OOMKilled", f"killed by the kernel's OOM killer (pid {pid}, kernel log)"
    known = "" if kills is not None else "; kernel log not readable, so SIGKILL and the OOM killer look alike"
    return "ProcessGone", (f"process {pid} on {marker['host']} is gone (killed by a signal such as SIGKILL, "
                           f"or crashed){known}")


def died_record(marker: dict) -> StageRecord:
    """The stage_runs row for a stage whose process died: identifying fields from the marker, the last
    heartbeat's peak and progress, a projection where one is honest."""

    error_type, reason = _death_reason(marker)
    identity = marker["fields"]  # what the runner knew before the stage started
    elapsed = float(marker.get("elapsed_s") or max(marker["beat_epoch"] - marker["started_epoch"], 0.0))
    progress = Progress(**marker["progress"]) if marker.get("progress") else None
    projection = project(identity["stage"], progress, elapsed)
    done = f", {progress.done}/{progress.total} items done" if progress else ""
    peak = f", last peak {marker['peak_rss_mb']:.0f} MB" if marker.get("peak_rss_mb") is not None else ""
    return unfinished_record(
        identity,
        status=DIED,
        error_type=error_type,
        error_message=f"stage '{identity['stage']}' died after {elapsed:.1f} s: {reason}{peak}{done}",
        started_at=datetime.fromtimestamp(marker["started_epoch"], timezone.utc),
        finished_at=datetime.fromtimestamp(marker["beat_epoch"], timezone.utc),
        wall_s=elapsed,
        rss_start_mb=marker.get("rss_start_mb"),
        peak_rss_mb=marker.get("peak_rss_mb"),
        peak_method="heartbeat",
        metered=True,
        **projection.as_record(),
    )


# -- the run marker: a kill between stages ---------------------------------------------------------
def run_marker_path(running_dir: Path, run_id: str) -> Path:
    """Beside the stage markers' folders (root/metrics_running/<run_id>.json), not inside them: the
    stage markers' readers (`*/*.json`) never mistake it for a stage."""
    return Path(running_dir) / f"{run_id}.json"


class RunMarker:
    """The marker of a whole run of planned stages, from before its first stage until it returns.

    A stage's own marker covers only its body; a process killed between two stages (during a hook, a
    check, the next step's start-up) leaves no stage marker, and so would leave no record. This one
    names the stages planned and those already recorded (`note_recorded`), so the reaper can record
    the stage that was next as died. Use as a context manager; it is removed on any normal return."""

    def __init__(self, running_dir: Path, run_id: str, fields: dict, stages: list[str]):
        self.path = run_marker_path(running_dir, run_id)
        now = time.time()
        self.body = {"status": RUNNING, **process_identity(), "started_epoch": now, "started_monotonic": time.monotonic(),
                     "beat_epoch": now, "stages": list(stages), "recorded": [], "fields": {**fields, "run_id": run_id}}

    def __enter__(self) -> "RunMarker":
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            atomic_write_text(self.path, json.dumps(self.body, default=str), durable=False)
        except OSError as exc:  # the run still runs; only a kill between its stages would go unrecorded
            log.warning("could not write the run marker %s (%s); a kill between stages would go unrecorded",
                        self.path, exc)
        return self

    def __exit__(self, *exc) -> None:
        self.path.unlink(missing_ok=True)


def note_recorded(running_dir: Path, run_id: str, stage: str) -> None:
    """The stage's record is in the store: tell the run's marker, if the run has one (a CLI run does; a
    stage run by a cluster worker or a test does not). Best effort: never raises."""
    path = run_marker_path(running_dir, run_id)
    try:
        body = json.loads(path.read_text())
        if stage not in body["recorded"]:
            body["recorded"].append(stage)
        body["beat_epoch"] = time.time()
        atomic_write_text(path, json.dumps(body, default=str), durable=False)
    except FileNotFoundError:
        return
    except (OSError, ValueError, KeyError, TypeError) as exc:
        log.warning("could not update the run marker %s: %s", path, exc)


def stored_stages(metrics_dir: Path, run_id: str) -> set[str]:
    """The stages of `run_id` with a record in the store. A process killed after writing its record but
    before removing its marker must not get a died record as well. Empty when the store is unreadable
    (then a died record may double a real one: a trace too many, never one too few)."""

    if not Path(metrics_dir).is_dir():
        return set()
    try:
        rows = query(metrics_dir, "SELECT DISTINCT stage FROM stage_runs WHERE run_id = ?", [run_id])
    except Exception as exc:  # noqa: BLE001 - the reaper must never stop a command
        log.warning("could not read the records of run %s: %s", run_id, exc)
        return set()
    return set(rows["stage"].dropna().tolist()) if len(rows) else set()


def between_stages_record(marker: dict, stored: set[str] = frozenset()) -> StageRecord | None:
    """The died record of the first planned stage with no record, for a run whose process was killed
    between stages; None when every planned stage was recorded (it died after its last one).
    stored: the run's stages with a record in the store (the marker may lag behind it)."""

    recorded = set(marker.get("recorded") or []) | set(stored)
    following = [s for s in marker.get("stages") or [] if s not in recorded]
    if not following:
        return None
    stage = following[0]
    error_type, reason = _death_reason(marker)
    after = f"after '{marker['recorded'][-1]}' was recorded" if marker.get("recorded") else "before its first stage"
    last = datetime.fromtimestamp(marker["beat_epoch"], timezone.utc)
    return unfinished_record(
        {**marker["fields"], "stage": stage},
        status=DIED,
        error_type=error_type,
        error_message=f"run killed between stages ({after}); stage '{stage}' never finished: {reason}",
        started_at=last, finished_at=last, metered=False,
    )


def _claim(path: Path) -> Path | None:
    """Take a marker for reaping; None when another reaper took it first."""
    return claim(path, "reaping")


def live_runs(running_dir: Path) -> set[str]:
    """Run ids with at least one marker whose process still runs (or cannot be judged)."""
    alive = set()
    for path in [*Path(running_dir).glob("*/*.json"), *Path(running_dir).glob("*.json")]:
        try:
            marker = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        if is_gone(marker) is not True:
            alive.add(path.parent.name if path.parent != Path(running_dir) else path.stem)
    return alive


def _read_marker(path: Path, root: Path) -> tuple[dict, bool | None] | None:
    try:
        marker = json.loads(path.read_text())
        return marker, is_gone(marker)
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError) as exc:
        quarantine(path, root, f"unreadable running marker ({exc})")
        return None


def reap(root: Path) -> list[Death]:
    """Turn the markers of dead processes under root/metrics_running into died records: a stage's
    marker into its own, a run's marker (killed between stages) into one for the stage that was next.
    Safe to call from any number of processes at once.

    An old data root may still hold a metrics_pending/ folder (the hand-off files of earlier
    versions); `kura-perf db` commits its leftovers once (store/leftovers.py); the reaper ignores it."""

    root = Path(root)
    running, metrics = root / "metrics_running", root / "metrics"
    deaths: list[Death] = []
    for path in sorted(running.glob("*/*.json")):
        read = _read_marker(path, root)
        if read is None or read[1] is not True or (claimed := _claim(path)) is None:
            continue
        marker = read[0]
        run_id, stage = path.parent.name, path.stem
        if marker.get("status") == FINISHED:  # written by earlier versions once the record was saved
            deaths.append(Death(run_id, stage, "process gone after the stage saved its record", None))
        elif marker.get("record"):  # its own record, kept back while the store could not take it
            write_stage_record(metrics, StageRecord.from_json(marker["record"]))
            deaths.append(Death(run_id, stage, "process gone after the stage kept its record", None))
        elif stage in stored_stages(metrics, run_id):  # killed between writing its record and removing this
            deaths.append(Death(run_id, stage, "process gone after the stage stored its record", None))
        else:
            record = died_record(marker)
            write_stage_record(metrics, record)
            log.warning("recorded a died stage: run %s, %s", run_id, record.error_message)
            deaths.append(Death(run_id, stage, record.error_message, record))
        claimed.unlink(missing_ok=True)
        try:
            path.parent.rmdir()
        except OSError:
            pass
    died_inside = {d.run_id for d in deaths if d.record is not None}
    for path in sorted(running.glob("*.json")):
        read = _read_marker(path, root)
        if read is None or read[1] is not True or (claimed := _claim(path)) is None:
            continue
        marker, run_id = read[0], path.stem
        record = None if run_id in died_inside else between_stages_record(marker, stored_stages(metrics, run_id))
        if record is not None:
            write_stage_record(metrics, record)
            log.warning("recorded a run killed between stages: run %s, %s", run_id, record.error_message)
            deaths.append(Death(run_id, record.stage, record.error_message, record))
        elif run_id not in died_inside:
            deaths.append(Death(run_id, "", "process gone after its last stage was recorded", None))
        claimed.unlink(missing_ok=True)
    return deaths
