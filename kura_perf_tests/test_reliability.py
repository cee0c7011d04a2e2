"""Issue 9 faults, in-process and fast: atomic writes, projection arithmetic, running markers and the
reaper, quarantine of unreadable record files, memory exhaustion as a breaking point, SIGINT."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from kura_perf.backends import Prepares, ReportsApiCounters
from kura_perf.errors import BreakingPoint
from kura_perf.files import outputs
from kura_perf.files.atomic import atomic_write, atomic_write_text, is_temp
from kura_perf.meter.api import ApiCounters
from kura_perf.meter.failures import is_interrupt, is_memory_exhaustion
from kura_perf.meter.projection import LINEAR_IN_ITEMS, Progress, project, rate
from kura_perf.pipeline.runner import StageRun, run_stage
from kura_perf.profiles import get_profile
from kura_perf.settings.paths import Paths
from kura_perf.settings.run import RunSettings
from kura_perf.stages.base import StageResult
from kura_perf.store import liveness, query, write_record
from kura_perf.store.leftovers import commit_leftovers
from kura_perf.store.record import StageRecord

ROOT = Path(__file__).resolve().parents[1]


# -- atomic writes ----------------------------------------------------------------------------------
def test_atomic_write_returns_its_own_size_and_leaves_no_temp(tmp_path):
    target = tmp_path / "x.bin"
    assert atomic_write(target, lambda tmp: tmp.write_bytes(b"a" * 1234)) == 1234
    assert target.read_bytes() == b"a" * 1234
    assert [p.name for p in tmp_path.iterdir()] == ["x.bin"]


def test_atomic_write_removes_its_temp_on_any_failure_and_keeps_the_old_file(tmp_path):
    target = tmp_path / "x.txt"
    atomic_write_text(target, "old")

    def half_then_fail(tmp):
        tmp.write_text("half")
        raise OSError(28, "No space left on device")

    with pytest.raises(OSError):
        atomic_write(target, half_then_fail)
    assert target.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.txt"]


def test_two_writers_of_one_path_never_share_a_temp_name(tmp_path):
    seen = []
    atomic_write(tmp_path / "x", lambda tmp: (seen.append(tmp), tmp.write_text("1")))
    atomic_write(tmp_path / "x", lambda tmp: (seen.append(tmp), tmp.write_text("2")))
    assert seen[0] != seen[1] and all(is_temp(p) and str(os.getpid()) in p.name for p in seen)


def test_stage_sizes_are_the_files_this_writer_wrote(tmp_path):
    data = outputs.StageData(tables={"main": pd.DataFrame({"a": range(100)})}, arrays={"v": np.ones((10, 4))})
    sizes = outputs.write_stage(tmp_path, "embeddings", data)
    assert sizes == {name: (tmp_path / name).stat().st_size for name in sizes}
    assert json.loads((tmp_path / "embeddings.manifest.json").read_text())["files"] == sizes
    assert not [p for p in tmp_path.iterdir() if is_temp(p)]


# -- projection -------------------------------------------------------------------------------------
def test_linear_projection_uses_the_rate_between_reports():
    # 100 items at 2 s, 500 at 10 s: 50 items/s; 1000 items need 10 s more after the last report.
    p = project("embeddings", Progress(done=500, total=1000, first_done=100, first_s=2.0, last_s=10.0), elapsed_s=11.0)
    assert p.rate_items_per_s == pytest.approx(50.0)
    assert p.projected_wall_s == pytest.approx(20.0)
    assert p.projection_kind == LINEAR_IN_ITEMS
    assert (p.items_done, p.items_total, p.elapsed_s) == (500, 1000, 11.0)


def test_projection_only_where_honest():
    partial = Progress(done=10, total=100, first_done=10, first_s=1.0, last_s=1.0)
    assert rate(partial) == pytest.approx(10.0)  # one report: items since the stage started
    assert project("clusters", partial, 2.0).projection_kind is None  # not linear in items
    assert project("clusters", partial, 2.0).items_done == 10
    done = Progress(done=100, total=100, first_done=10, first_s=1.0, last_s=5.0)
    assert project("embeddings", done, 6.0, finished=True).projected_wall_s is None
    nothing = Progress(done=0, total=100, first_done=0, first_s=1.0, last_s=1.0)
    assert project("embeddings", nothing, 3.0).projection_kind is None
    assert project("embeddings", None, 3.0).items_done is None
    # never less than the time already spent
    slow_tail = Progress(done=99, total=100, first_done=1, first_s=0.0, last_s=1.0)
    assert project("summaries", slow_tail, 30.0).projected_wall_s == pytest.approx(30.0)


# -- the runner: breaking points with progress, memory, interrupts ------------------------------------
class CountingBackend:
    """Processes `total` items at a steady pace, reporting progress; then does `finally_do`."""

    name = "test-double"

    def __init__(self, total=10_000, per_item_s=0.002, fail=None):
        self.total, self.per_item_s, self.fail = total, per_item_s, fail

    def run(self, stage, inputs):
        inputs.progress(0, self.total)  # the stage has started: the first report, before any work
        for done in range(0, self.total, 50):
            if self.fail is not None and done >= 200:
                raise self.fail
            time.sleep(self.per_item_s * 50)
            inputs.progress(done + 50, self.total)
        return StageResult(data=outputs.StageData(), items_in=self.total, items_out=self.total)

    def close(self):
        pass


def _run(kp_home, backend, **profile_overrides):
    profile = get_profile("offline").model_copy(update=profile_overrides)
    run = StageRun("conversations", profile, "10k", settings=RunSettings.from_env(paths=Paths(kp_home)), backend=backend)
    return run


def _stored(kp_home, run):
    """The run's record, read back from the store (where the run wrote it, not a hand-off file)."""
    rows = query(kp_home / "metrics", "SELECT * FROM stage_runs WHERE run_id = ?", [run.run_id])
    assert len(rows) == 1
    return rows.to_dict("records")[0]


def test_stage_stopped_at_a_time_limit_records_progress_and_a_projection(kp_home):
    # The limit counts from the meter's start, which includes the process's first import of umap-learn
    # (JitWatch): on a loaded CI worker that alone took over 0.5 s, and the stage was stopped before
    # its first item. 3 s leaves room for it; the backend needs 20 s for its 10,000 items.
    run = _run(kp_home, CountingBackend(), stage_timeout_s=3.0)
    with pytest.raises(BreakingPoint, match="time limit"):
        run_stage(run)
    record = _stored(kp_home, run)
    assert record["status"] == "breaking_point"
    assert 0 < record["items_done"] < record["items_total"] == 10_000
    assert record["projection_kind"] == LINEAR_IN_ITEMS
    assert record["projected_wall_s"] > record["elapsed_s"] > 0
    assert record["rate_items_per_s"] > 0


@pytest.mark.parametrize("error", [
    MemoryError("Unable to allocate 3.0 GiB for an array"),
    ImportError("libtorch_cpu.so: failed to map segment from shared object"),
    RuntimeError("[enforce fail at alloc_cpu.cpp:117] DefaultCPUAllocator: can't allocate memory"),
    OSError(12, "Cannot allocate memory"),
])
def test_memory_exhaustion_in_any_guise_is_a_breaking_point(kp_home, error):
    assert is_memory_exhaustion(error)
    run = _run(kp_home, CountingBackend(fail=error))
    with pytest.raises(BreakingPoint, match="out of memory"):
        run_stage(run)
    record = _stored(kp_home, run)
    assert record["status"] == "breaking_point" and record["error_type"] == "BreakingPoint"
    assert "allocation failed" in record["error_message"] and record["items_done"] == 200


def test_other_errors_stay_failures(kp_home):
    assert not is_memory_exhaustion(ValueError("bad value")) and not is_memory_exhaustion(ImportError("no module x"))
    run = _run(kp_home, CountingBackend(fail=ValueError("bad value")))
    with pytest.raises(ValueError):
        run_stage(run)
    assert _stored(kp_home, run)["status"] == "failed"


def test_ctrl_c_in_a_stage_is_recorded_as_interrupted(kp_home):
    assert is_interrupt(KeyboardInterrupt())
    run = _run(kp_home, CountingBackend(fail=KeyboardInterrupt()))
    with pytest.raises(KeyboardInterrupt):
        run_stage(run)
    record = _stored(kp_home, run)
    assert record["status"] == "interrupted" and record["items_done"] == 200
    # the record is in the store, so the marker is gone: no died record will be made from it
    assert not (kp_home / "metrics_running" / run.run_id / "conversations.json").exists()
    assert liveness.reap(kp_home) == []


class CountedFailure(CountingBackend, ReportsApiCounters):
    """Fails midway, after its (pretend) API models counted 3 calls, one of them a 429."""

    def api_counters(self):
        counters = ApiCounters()
        counters.add(calls=3, errors=1, rate_limited=1, tokens_in=30)
        return counters


class PreparedBackend(CountingBackend, Prepares):
    def prepare(self, stage, read_upstream):
        self.prepared = stage


def test_a_failed_stage_reports_the_api_calls_its_backend_declares(kp_home):
    run = _run(kp_home, CountedFailure(total=400, per_item_s=0, fail=ValueError("bad value")))
    with pytest.raises(ValueError):
        run_stage(run)
    record = _stored(kp_home, run)
    assert (record["api_calls"], record["api_errors"], record["api_429s"], record["tokens_in"]) == (3, 1, 1, 30)
    undeclared = _run(kp_home, CountingBackend(total=400, per_item_s=0, fail=ValueError("bad value")))
    with pytest.raises(ValueError):
        run_stage(undeclared)
    assert _stored(kp_home, undeclared)["api_calls"] is None


def test_the_runner_prepares_a_backend_that_declares_it_before_the_stage(kp_home):
    backend = PreparedBackend(total=100, per_item_s=0)
    record = run_stage(_run(kp_home, backend))
    assert backend.prepared == "conversations" and record.status == "success" and record.items_in == 100


def test_the_backends_declare_their_optional_abilities(tmp_path):
    from kura_perf.backends.kura import KuraBackend
    from kura_perf.backends.reference import ReferenceBackend

    assert {Prepares, ReportsApiCounters} <= set(ReferenceBackend.__mro__)
    backend = ReferenceBackend(get_profile("offline"), RunSettings(paths=Paths(tmp_path)))
    assert isinstance(backend, Prepares) and isinstance(backend, ReportsApiCounters)
    # Kura's backend has neither: its failures carry their own traffic (KuraFailure.api).
    assert not {Prepares, ReportsApiCounters} & set(KuraBackend.__mro__)


# -- running markers and the reaper ------------------------------------------------------------------
def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def _marker(kp_home, run_id="r1", stage="embeddings", **identity):
    hb = liveness.Heartbeat(Paths(kp_home).running, {
        "run_id": run_id, "stage": stage, "profile": "offline", "scale": "1k", "scale_n": 1000, "backend": "reference"},
        progress=type("P", (), {"latest": Progress(300, 1000, 100, 2.0, 6.0)})(), interval_s=0)
    hb.beat(7.0, 400.0, 512.0)
    hb.body.update(identity)
    hb._write()
    return hb


def test_live_stage_is_left_alone(kp_home):
    _marker(kp_home)
    assert liveness.reap(kp_home) == []
    assert (kp_home / "metrics_running" / "r1" / "embeddings.json").is_file()


@pytest.mark.parametrize("how", ["dead pid", "pid reused"])
def test_dead_stage_becomes_a_died_record_with_peak_progress_and_projection(kp_home, how):
    identity = ({"pid": _dead_pid()} if how == "dead pid"
                else {"pid_since_boot": liveness.process_identity()["pid_since_boot"] + 3.0})
    _marker(kp_home, **identity)
    deaths = liveness.reap(kp_home)
    assert [(d.run_id, d.stage) for d in deaths] == [("r1", "embeddings")]
    assert deaths[0].record.status == "died" and deaths[0].record.scale_n == 1000
    rows = query(kp_home / "metrics", "SELECT * FROM breaking_points")
    assert len(rows) == 1
    row = rows.iloc[0]
    assert row["status"] == "died" and row["peak_rss_mb"] == 512.0
    assert (row["items_done"], row["items_total"]) == (300, 1000)
    assert row["projection_kind"] == LINEAR_IN_ITEMS and row["projected_wall_s"] == pytest.approx(6.0 + 700 / 50)
    assert "died after 7.0 s" in row["error_message"] and "300/1000" in row["error_message"]
    assert not list((kp_home / "metrics_running").rglob("*.json*"))
    assert liveness.reap(kp_home) == []  # once only


def test_a_wall_clock_step_does_not_make_a_live_stage_look_dead(kp_home):
    """Linux's boot time (hence psutil's epoch create_time) moves when the clock is stepped; the
    start time since boot does not. A live process must survive both kinds of marker."""
    me = liveness.process_identity()
    _marker(kp_home, run_id="r1", pid_started=me["pid_started"] + 7.0)  # clock stepped 7 s since the marker
    _marker(kp_home, run_id="r2", pid_started=me["pid_started"] - 7.0, pid_since_boot=None)  # an older marker
    assert liveness.reap(kp_home) == []
    assert liveness.is_gone({**me, "pid_since_boot": None, "pid_started": me["pid_started"] - 10_000}) is True


def test_a_record_kept_in_the_marker_is_stored_by_the_reaper_not_a_died_one(kp_home):
    """The store could not take the record (a full disk): the marker kept it; once the process is gone
    the reaper stores that record, and makes no died record of its own."""
    hb = _marker(kp_home, pid=_dead_pid())
    assert hb.keep(StageRecord(record_id="x", run_id="r1", stage="embeddings", status="interrupted").to_json())
    deaths = liveness.reap(kp_home)
    assert deaths and deaths[0].record is None
    assert query(kp_home / "metrics", "SELECT status FROM stage_runs")["status"].tolist() == ["interrupted"]


def test_a_finished_marker_of_an_earlier_version_makes_no_died_record(kp_home):
    hb = _marker(kp_home, pid=_dead_pid())
    hb.body["status"] = liveness.FINISHED
    hb._write()
    deaths = liveness.reap(kp_home)
    assert deaths and deaths[0].record is None
    assert not (kp_home / "metrics").exists() or not len(query(kp_home / "metrics", "SELECT * FROM stage_runs"))


def test_a_record_the_store_refuses_is_kept_in_the_marker_and_stored_later(kp_home, monkeypatch):
    """Full disk at the end of a stage: the run raises, the record waits in its running marker, the
    next command's reaper (once the process is gone) puts it into the store."""
    from kura_perf.pipeline import metered

    def full(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(metered, "write_stage_record", full)
    run = _run(kp_home, CountingBackend(total=100, per_item_s=0))
    with pytest.raises(OSError, match="No space"):
        run_stage(run)
    marker = kp_home / "metrics_running" / run.run_id / "conversations.json"
    body = json.loads(marker.read_text())
    assert body["status"] == liveness.UNSTORED and json.loads(body["record"])["status"] == "success"
    monkeypatch.undo()
    body["pid"] = _dead_pid()
    marker.write_text(json.dumps(body))
    liveness.reap(kp_home)
    assert _stored(kp_home, run)["status"] == "success" and not marker.exists()


def test_leftover_pending_records_of_an_old_root_are_committed_once_unless_live(kp_home):
    """An old data root's metrics_pending/ (earlier versions' hand-off): `kura-perf db` commits it,
    skipping runs still alive; the folder is then gone."""
    leftovers = kp_home / "metrics_pending"
    for run_id in ("live", "dead"):
        (leftovers / run_id).mkdir(parents=True)
        (leftovers / run_id / "embeddings.json").write_text(
            StageRecord(record_id=run_id, run_id=run_id, stage="embeddings", status="success").to_json())
    assert commit_leftovers(kp_home, kp_home / "metrics", skip=lambda run_id: run_id == "live") == 1
    assert (leftovers / "live" / "embeddings.json").is_file() and not (leftovers / "dead").exists()
    assert commit_leftovers(kp_home, kp_home / "metrics") == 1
    assert not leftovers.exists()
    assert sorted(query(kp_home / "metrics", "SELECT run_id FROM stage_runs")["run_id"]) == ["dead", "live"]


def test_oom_killer_lines_are_read_when_the_kernel_log_is(kp_home):
    kills = liveness.kernel_oom_kills()
    assert kills is None or all(isinstance(pid, int) for pid in kills)


# -- quarantine ---------------------------------------------------------------------------------------
def test_unreadable_record_file_is_quarantined_not_fatal(kp_home, caplog):
    metrics = kp_home / "metrics"
    write_record(metrics, "stage_runs", {"record_id": "good", "stage": "summaries", "status": "success"})
    folder = next((metrics / "stage_runs").glob("date=*"))
    (folder / "garbage.parquet").write_bytes(os.urandom(4000))
    (folder / "empty.parquet").write_bytes(b"")
    with caplog.at_level(logging.WARNING):
        rows = query(metrics, "SELECT record_id FROM stage_runs")
    assert rows["record_id"].tolist() == ["good"]
    moved = sorted(p.name for p in (kp_home / "metrics_quarantine").rglob("*.parquet"))
    assert moved == ["empty.parquet", "garbage.parquet"]
    assert "garbage.parquet" in caplog.text and "quarantined" in caplog.text


def test_unreadable_leftover_pending_record_is_quarantined(kp_home):
    (kp_home / "metrics_pending" / "r9").mkdir(parents=True)
    (kp_home / "metrics_pending" / "r9" / "embeddings.json").write_text("{not json")
    assert commit_leftovers(kp_home, kp_home / "metrics") == 0
    assert list((kp_home / "metrics_quarantine").rglob("embeddings.json*"))


# -- a real OS memory cap ----------------------------------------------------------------------------
CAPPED = r"""
import json, re, resource, sys
from pathlib import Path
import numpy as np
from kura_perf.files import outputs
from kura_perf.settings.paths import Paths
from kura_perf.errors import BreakingPoint
from kura_perf.profiles import get_profile
from kura_perf.pipeline.runner import StageRun, run_stage
from kura_perf.stages.base import StageResult
from kura_perf.settings.run import RunSettings
from kura_perf.store import query, write_record

class Hog:
    name = "test-double"
    def run(self, stage, inputs):
        inputs.progress(100, 1000)
        block = np.ones(2**31, dtype=np.uint8)  # 2 GB: far past the cap below
        return StageResult(data=outputs.StageData(), items_in=1000, items_out=1000)
    def close(self):
        pass

home = Path(sys.argv[1])
write_record(home / "metrics", "stage_runs", {"record_id": "seed", "stage": "summaries", "status": "success"})
vm_kb = int(re.search(r"VmSize:\s+(\d+)", Path("/proc/self/status").read_text()).group(1))
resource.setrlimit(resource.RLIMIT_AS, ((vm_kb + 800 * 1024) * 1024, resource.RLIM_INFINITY))
run = StageRun("conversations", get_profile("offline"), "1k", settings=RunSettings.from_env(paths=Paths(home)),
               backend=Hog())
try:
    run_stage(run)
except BreakingPoint as exc:
    print("breaking point:", exc)
rows = query(home / "metrics", "SELECT status, error_message, items_done FROM stage_runs WHERE run_id = ?", [run.run_id])
print(json.dumps({k: (int(v) if k == "items_done" else v) for k, v in rows.to_dict("records")[0].items()}))
print("store rows:", len(query(home / "metrics", "SELECT * FROM stage_runs")))  # DuckDB works under the cap
"""


def test_allocation_failure_under_an_os_memory_cap_is_a_breaking_point(tmp_path):
    out = subprocess.run([sys.executable, "-c", CAPPED, str(tmp_path)], capture_output=True, text=True, timeout=300,
                         # Each thread's malloc arena reserves 64 MB of address space: cap their number, so the
                         # headroom left under the cap does not depend on how many threads have run.
                         env={**os.environ, "PYTHONPATH": str(ROOT), "MALLOC_ARENA_MAX": "2"})
    assert out.returncode == 0, out.stderr[-3000:]
    lines = out.stdout.strip().splitlines()
    assert lines[0].startswith("breaking point:") and "out of memory under an address-space cap" in lines[0]
    record = json.loads(lines[1])
    assert record["status"] == "breaking_point" and "MemoryError" in record["error_message"]
    assert record["items_done"] == 100
    assert lines[2] == "store rows: 2"  # the seed and the breaking point, written under the cap


def test_a_garbage_record_file_does_not_stop_run_db_or_report(kp_home, tmp_path, monkeypatch, capsys, caplog):
    """Defect 6 end to end: a garbage .parquet under data/metrics/ before a run."""
    from kura_perf.cli.main import main

    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "dh"))
    bad = kp_home / "metrics" / "stage_runs" / "date=2026-01-01" / "garbage.parquet"
    bad.parent.mkdir(parents=True)
    bad.write_bytes(b"PAR1" + os.urandom(2000))
    with caplog.at_level(logging.WARNING):
        assert main(["run", "--scale", "100", "--stages", "conversations"]) == 0
    assert "garbage.parquet" in caplog.text
    assert not bad.exists() and (kp_home / "metrics_quarantine" / "metrics" / "stage_runs" / "date=2026-01-01"
                                 / "garbage.parquet").is_file()
    bad.write_bytes(b"")  # another one, found by `db` before it builds the views
    capsys.readouterr()
    assert main(["db"]) == 0
    assert "quarantined 1 unreadable record file" in capsys.readouterr().out
    assert main(["sql", "select count(*) n from stage_runs", "--format", "csv"]) == 0
    assert capsys.readouterr().out.split() == ["n", "1"]


OOM_CHILD = r"""
import os, sys, time, uuid
from pathlib import Path
import numpy as np
from kura_perf.files import outputs
from kura_perf.settings.paths import Paths
from kura_perf.meter import memory
from kura_perf.profiles import get_profile
from kura_perf.pipeline.runner import StageRun, run_stage
from kura_perf.settings.run import RunSettings
from kura_perf.stages.base import StageResult

cgroup = Path(sys.argv[2])
(cgroup / "memory.limit_in_bytes").write_text(str(int((memory.rss_mb() + 120) * 2**20)))
(cgroup / "cgroup.procs").write_text(str(os.getpid()))

class Grower:
    name = "test-double"
    def run(self, stage, inputs):
        blocks = []
        for i in range(1000):
            blocks.append(np.ones(5 * 2**20, dtype=np.uint8))  # 5 MB, touched
            inputs.progress(i + 1, 1000)
            time.sleep(0.05)
        return StageResult(data=outputs.StageData(), items_in=1000, items_out=1000)
    def close(self):
        pass

run_stage(StageRun("conversations", get_profile("offline"), "1k", settings=RunSettings.from_env(paths=Paths(Path(sys.argv[1]))),
                   backend=Grower()))
"""


def test_a_stage_killed_by_the_oom_killer_is_a_died_breaking_point(kp_home):
    """The OOM killer, for real: a cgroup (v1) memory limit around a growing stage."""
    root = Path("/sys/fs/cgroup/memory")
    if not os.access(root, os.W_OK):
        pytest.skip("no writable cgroup v1 memory controller here")
    cgroup = root / f"kura-perf-test-{os.getpid()}"
    try:
        cgroup.mkdir()
    except OSError as exc:
        pytest.skip(f"cannot create a memory cgroup: {exc}")
    try:
        out = subprocess.run([sys.executable, "-c", OOM_CHILD, str(kp_home), str(cgroup)], capture_output=True,
                             text=True, timeout=300, env={**os.environ, "PYTHONPATH": str(ROOT)})
    finally:
        for _ in range(50):
            try:
                cgroup.rmdir()
                break
            except OSError:
                time.sleep(0.1)
    assert out.returncode == -9, out.stderr[-2000:]
    deaths = liveness.reap(kp_home)
    assert len(deaths) == 1 and deaths[0].record is not None
    row = query(kp_home / "metrics", "SELECT * FROM breaking_points").iloc[0]
    assert row["status"] == "died" and row["stage"] == "conversations"
    if liveness.kernel_oom_kills() is not None:
        assert row["error_type"] == "OOMKilled" and "OOM killer" in row["error_message"]
    assert row["peak_rss_mb"] > 0 and 0 < row["items_done"] < 1000
    assert row["projection_kind"] == LINEAR_IN_ITEMS
