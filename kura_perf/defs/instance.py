"""The Dagster instance kura-perf runs in: created once, safely, and cleared of runs whose process died.

Two processes that create a fresh SQLite DAGSTER_HOME at once race in its migrations (two
alembic_version rows, "table runs already exists"), and every later run then fails. So the folder,
its dagster.yaml and the instance's first initialisation (which creates and stamps the SQLite
databases) happen under one exclusive file lock; a marker file says it is done, so later processes
skip the lock.

A run whose process was killed (SIGKILL, the OOM killer) stays STARTED for ever; `fail_dead_runs`
marks such runs failed, for runs whose stage markers the reaper found dead and for CLI runs whose
recorded process (run tags) is gone.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from kura_perf.files.atomic import atomic_write_text
from kura_perf.files.locks import file_lock
from kura_perf.store import liveness

log = logging.getLogger("kura_perf")

DAGSTER_YAML = """\
# Written by kura-perf. One benchmark run at a time, so runs do not disturb each other's timings.
run_queue:
  max_concurrent_runs: 1
telemetry:
  enabled: false
"""
READY = ".kura-perf-initialised"
# The one tag a CLI run carries so a later process can tell whether the process that ran it is gone:
# "pid=... host=... since_boot=... started=... boot_id=..." (one tag, not five: the UI's runs list
# shows every tag of every run). Runs recorded before it carry the five kura_perf/pid* tags.
PROCESS_TAG = "kura_perf/process"
_PROCESS_FIELDS = {"pid": "pid", "host": "host", "since_boot": "pid_since_boot", "started": "pid_started",
                   "boot_id": "boot_id"}
_OLD_PID_TAGS = {"pid": "kura_perf/pid", "pid_started": "kura_perf/pid_started",
                 "pid_since_boot": "kura_perf/pid_since_boot", "host": "kura_perf/host", "boot_id": "kura_perf/boot_id"}


def prepare_dagster_home(home: Path) -> Path:
    """Create (if needed) and initialise the instance folder; safe with any number of processes at once."""
    home = Path(home).resolve()
    home.mkdir(parents=True, exist_ok=True)
    if (home / READY).exists():
        return home
    with file_lock(home / ".kura-perf-init.lock"):
        if not (home / READY).exists():
            if not (home / "dagster.yaml").exists():
                atomic_write_text(home / "dagster.yaml", DAGSTER_YAML)
            from dagster import DagsterInstance

            instance = DagsterInstance.from_config(str(home))  # creates and migrates the SQLite storages
            try:
                instance.get_runs(limit=1)
            finally:
                instance.dispose()
            atomic_write_text(home / READY, "initialised by kura-perf\n")
    return home


def open_instance(home: Path):
    from dagster import DagsterInstance

    return DagsterInstance.from_config(str(prepare_dagster_home(home)))


def run_tags(identity: dict | None = None) -> dict[str, str]:
    """This process's identity (or `identity`) as the run's one process tag."""
    identity = liveness.process_identity() if identity is None else identity
    return {PROCESS_TAG: " ".join(f"{short}={identity[key]}" for short, key in _PROCESS_FIELDS.items()
                                  if identity.get(key) is not None)}


def tagged_identity(tags: dict) -> dict:
    """The process identity a run's tags carry (liveness.process_identity's keys); {} when none."""
    if PROCESS_TAG in tags:
        pairs = dict(part.split("=", 1) for part in tags[PROCESS_TAG].split() if "=" in part)
        return {key: pairs[short] for short, key in _PROCESS_FIELDS.items() if short in pairs}
    return {key: tags[tag] for key, tag in _OLD_PID_TAGS.items() if tag in tags}


_UNFINISHED = ("STARTED", "STARTING", "NOT_STARTED", "CANCELING")


def fail_dead_runs(instance, run_ids=(), reasons: dict[str, str] | None = None) -> list[str]:
    """Mark failed: the given runs (their process is known dead) if still unfinished, and every
    unfinished CLI run whose recorded process is gone. Returns the run ids marked."""
    from dagster import DagsterRunStatus, RunsFilter

    reasons = reasons or {}
    unfinished = [DagsterRunStatus[s] for s in _UNFINISHED]
    marked = []
    candidates = {run_id: None for run_id in run_ids}
    for run in instance.get_runs(RunsFilter(statuses=unfinished, tags={"kura_perf/source": "cli"})):
        identity = tagged_identity(run.tags)
        if identity.get("pid") and liveness.is_gone(identity) is True:
            candidates.setdefault(run.run_id, run)
            reasons.setdefault(run.run_id, f"process {identity['pid']} on {identity['host']} is gone")
    for run_id, run in candidates.items():
        run = run or instance.get_run_by_id(run_id)
        if run is None or run.status.value not in _UNFINISHED:
            continue
        reason = reasons.get(run_id, "its process is gone")
        instance.report_run_failed(run, message=f"kura-perf: the run's process died: {reason}")
        log.warning("marked Dagster run %s failed: %s", run_id, reason)
        marked.append(run_id)
    return marked


def reap_and_fail(root: Path, instance=None, home: Path | None = None, check_runs: bool = False) -> list[str]:
    """The whole clean-up: died records for dead stages, then their Dagster runs marked failed (and,
    with check_runs, every unfinished CLI run whose process is gone). Uses `instance`, else opens the
    one at `home` when needed and that instance exists."""
    deaths = liveness.reap(root)
    reasons = {d.run_id: d.reason for d in deaths}
    if instance is not None:
        return fail_dead_runs(instance, reasons, reasons)
    if not (reasons or check_runs) or home is None or not (Path(home) / "dagster.yaml").exists():
        return []
    instance = open_instance(home)
    try:
        return fail_dead_runs(instance, reasons, reasons)
    finally:
        instance.dispose()


def default_home(root: Path) -> Path:
    return Path(os.environ.get("DAGSTER_HOME") or Path(root) / "dagster_home").resolve()
