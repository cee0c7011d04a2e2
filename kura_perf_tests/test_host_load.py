"""The quiet-box protocol (issue 19): other processes' CPU over a stage from two /proc/stat samples, the
contended threshold, the meter carrying it onto the record, and `matrix --wait-quiet`."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from kura_perf.meter import Meter
from kura_perf.meter.host_load import (
    CONTENDED_SHARE,
    HostLoad,
    host_load,
    is_contended,
    parse_proc_stat,
    wait_until_quiet,
)


def proc_stat(user, nice, system, idle, iowait, irq, softirq, steal, cores=2) -> str:
    """A synthetic /proc/stat in ticks (USER_HZ 100), shaped as the kernel writes it."""
    lines = [f"cpu  {user} {nice} {system} {idle} {iowait} {irq} {softirq} {steal} 0 0"]
    lines += [f"cpu{i} 0 0 0 0 0 0 0 0 0 0" for i in range(cores)]
    lines += ["intr 12345 0 0", "ctxt 999", "btime 1700000000", "processes 42"]
    return "\n".join(lines) + "\n"


def test_busy_time_counts_user_nice_system_irq_softirq_steal_not_idle_or_iowait():
    sample = parse_proc_stat(proc_stat(100, 20, 30, 5000, 400, 1, 2, 7, cores=4))
    assert sample.busy_s == pytest.approx((100 + 20 + 30 + 1 + 2 + 7) / 100)
    assert sample.total_s == pytest.approx((100 + 20 + 30 + 5000 + 400 + 1 + 2 + 7) / 100)
    assert sample.cores == 4


def test_contention_is_other_processes_cpu_over_wall_times_cores():
    # Over 10 s on 2 cores the box was busy for 7 s (700 ticks); this process tree took 4 s of it.
    before = proc_stat(1000, 0, 200, 50_000, 0, 0, 0, 0)
    after = proc_stat(1000 + 500, 0, 200 + 150, 50_000 + 1300, 0, 0, 0, 50)
    load = host_load(before, after, own_cpu_s=4.0, wall_s=10.0)
    assert load.other_cpu_s == pytest.approx(3.0)
    assert load.contention == pytest.approx(3.0 / (10.0 * 2))
    assert load.cores == 2 and load.contended


def test_own_cpu_above_the_box_delta_is_floored_at_zero_not_negative():
    before, after = proc_stat(0, 0, 0, 0, 0, 0, 0, 0), proc_stat(100, 0, 0, 100, 0, 0, 0, 0)
    load = host_load(before, after, own_cpu_s=1.2, wall_s=1.0)  # the two clocks tick apart
    assert load.other_cpu_s == 0.0 and load.contention == 0.0 and not load.contended


def test_a_few_ticks_over_the_wall_never_read_above_the_whole_box():
    before, after = proc_stat(0, 0, 0, 0, 0, 0, 0, 0), proc_stat(305, 0, 0, 0, 0, 0, 0, 0)
    load = host_load(before, after, own_cpu_s=0.0, wall_s=1.5)  # 3.05 busy s in 1.5 s on 2 cores
    assert load.other_cpu_s == pytest.approx(3.0) and load.contention == pytest.approx(1.0)


def test_an_unreadable_sample_is_unknown_never_quiet():
    assert host_load("garbage", proc_stat(1, 0, 0, 0, 0, 0, 0, 0), own_cpu_s=0, wall_s=1) is None
    assert is_contended(None) is None


def test_contended_threshold_is_strictly_above_the_share():
    assert CONTENDED_SHARE == 0.10
    assert is_contended(0.10) is False
    assert is_contended(0.1001) is True
    assert is_contended(0.02) is False
    assert is_contended(0.5, threshold=0.6) is False
    # two 10 ms ticks over a 17 ms stage: 58% of a 2-core box, but tick noise, not a neighbour
    assert is_contended(0.58, other_cpu_s=0.02) is False
    assert is_contended(0.58, other_cpu_s=0.1) is True
    assert HostLoad(0.02, 0.58, 2).contended is False and HostLoad(5.0, 0.58, 2).contended is True


def test_the_meter_measures_host_load_over_its_interval(monkeypatch):
    """The Meter reads /proc/stat at start and finish: fed two synthetic samples, the measurement carries
    the other processes' CPU (the box's busy delta minus this process tree's CPU, both synthetic here)."""
    from kura_perf.meter import host_load as hl

    samples = iter([proc_stat(0, 0, 0, 0, 0, 0, 0, 0), proc_stat(900, 0, 0, 0, 0, 0, 0, 0)])
    own = iter([10.0, 12.5])
    monkeypatch.setattr(hl, "read_proc_stat", lambda: next(samples))
    monkeypatch.setattr(hl, "tree_cpu_s", lambda: next(own))
    monkeypatch.setattr(hl, "clock_ticks", lambda: 100)
    import time as real_time
    from types import SimpleNamespace

    from kura_perf.meter import meter as meter_module

    walls = iter([100.0, 110.0])  # the stage's wall: 10 s on the meter's clock
    monkeypatch.setattr(meter_module, "time", SimpleNamespace(perf_counter=lambda: next(walls), time=real_time.time,
                                                             thread_time=real_time.thread_time))
    with Meter("x", enabled=False) as meter:
        pass
    m = meter.measurement
    assert m.wall_s == 10.0
    assert m.host_other_cpu_s == pytest.approx(9.0 - 2.5)
    assert m.host_contention == pytest.approx(6.5 / (10.0 * 2))


def test_build_record_sets_contended_from_the_measured_share(monkeypatch):
    from kura_perf.meter.meter import Measurement
    from kura_perf.pipeline import records

    class FakeMeter:
        measurement = Measurement(started_at=1.0, finished_at=2.0, wall_s=1.0, host_other_cpu_s=0.5,
                                  host_contention=0.25)

    class Profile:
        name, embedding_backend = "offline", "onnx-int8"

        def content_hash(self):
            return "h"

    class Run:
        run_id, stage, shape, scale, profile = "r1", "embeddings", None, "100", Profile()
        settings = SimpleNamespace(simulator_url=None, kura_spec=None)  # no simulator, the installed Kura

    record = records.build_record(Run(), FakeMeter(), None, 0, None, "reference")
    assert record.host_contention == 0.25 and record.host_other_cpu_s == 0.5 and record.contended is True
    FakeMeter.measurement = Measurement(started_at=1.0, finished_at=2.0, wall_s=1.0, host_contention=0.02)
    assert records.build_record(Run(), FakeMeter(), None, 0, None, "reference").contended is False


def test_wait_until_quiet_waits_while_busy_and_prints_a_line_each_time():
    loads = iter([HostLoad(5.0, 0.8, 2), HostLoad(2.0, 0.3, 2), HostLoad(0.1, 0.01, 2)])
    lines: list[str] = []
    ticks = iter(range(0, 1000, 3))
    got = wait_until_quiet(sampler=lambda s: next(loads), echo=lines.append, clock=lambda: next(ticks),
                           timeout_s=600)
    assert got.contention == 0.01
    assert len(lines) == 2 and all("waiting for a quiet box" in line for line in lines)
    assert "80%" in lines[0]


def test_wait_until_quiet_gives_up_at_its_timeout_and_says_so():
    lines: list[str] = []
    ticks = iter(range(0, 1000, 50))
    got = wait_until_quiet(sampler=lambda s: HostLoad(5.0, 0.9, 2), echo=lines.append, clock=lambda: next(ticks),
                           timeout_s=100)
    assert got.contended
    assert "running anyway" in lines[-1]


# -- the matrix: one partition at a time, waiting for a quiet box first ------------------------------------


def test_matrix_waits_for_a_quiet_box_before_each_partition_and_runs_them_one_at_a_time(tmp_path, monkeypatch):
    from kura_perf.experiments import matrix
    from kura_perf.settings.run import RunSettings

    events: list[str] = []
    running: list[str] = []

    def fake_partition(scale, profile, profiles_file, log_path):
        assert not running, f"{profile} × {scale} started while {running} was running"
        running.append(f"{profile}-{scale}")
        events.append(f"run {profile}-{scale}")
        running.pop()
        return 0

    def fake_wait(*, threshold, timeout_s, echo):
        assert not running
        events.append(f"wait {threshold} {timeout_s}")

    monkeypatch.setattr(matrix, "run_partition_process", fake_partition)
    monkeypatch.setattr(matrix, "check_run_inputs", lambda settings, name: None)
    monkeypatch.setattr(matrix, "reap", lambda root: None)
    monkeypatch.setattr(matrix, "matrix_markdown", lambda *a: "table")
    monkeypatch.setenv("KURA_PERF_HOME", str(tmp_path / "data"))
    settings = RunSettings.from_env()
    matrix.run_matrix(settings, ["offline"], ["100", "1k"], echo=lambda line: None, wait_quiet=True,
                      quiet_timeout_s=42.0, wait=fake_wait)
    assert events == ["wait 0.1 42.0", "run offline-100", "wait 0.1 42.0", "run offline-1k"]
    events.clear()
    matrix.run_matrix(settings, ["offline"], ["100"], echo=lambda line: None, wait=fake_wait)
    assert events == ["run offline-100"]  # no waiting unless asked


def test_a_partition_process_has_ended_when_the_matrix_moves_on(tmp_path, monkeypatch):
    """run_partition_process returns only once the child is gone: the child writes a file as its last act
    after a pause, and the file is there the moment the call returns."""
    import sys

    from kura_perf.experiments import matrix

    done = tmp_path / "done"
    script = f"import time, pathlib; time.sleep(0.3); pathlib.Path({str(done)!r}).write_text('x')"
    monkeypatch.setattr(matrix, "partition_command", lambda *a: [sys.executable, "-c", script])
    assert matrix.run_partition_process("100", "offline", None, tmp_path / "log.txt") == 0
    assert done.exists()


def test_matrix_cli_has_wait_quiet(tmp_path, monkeypatch):
    from kura_perf.cli import run as cli_run
    from kura_perf.cli.main import main

    seen = {}

    def fake_run_matrix(settings, profiles, scales, **kwargs):
        seen.update(kwargs)
        return "table"

    monkeypatch.setattr(cli_run.matrix, "run_matrix", fake_run_matrix)
    monkeypatch.setenv("KURA_PERF_HOME", str(tmp_path / "data"))
    assert main(["matrix", "--wait-quiet", "--quiet-timeout-s", "5", "--scales", "100", "--profiles", "offline"]) == 0
    assert seen["wait_quiet"] is True and seen["quiet_timeout_s"] == 5.0


# -- the report marks contended rows beside their figures, with a count ------------------------------------


def test_report_tables_mark_contended_rows_and_count_them(tmp_path):
    from datetime import datetime, timedelta, timezone

    from kura_perf.report import tables as t
    from kura_perf.report.analysis import analyse
    from kura_perf.report.data import load_report_data
    from kura_perf.store.record import StageRecord
    from kura_perf.store.stage_records import write_stage_record

    t0 = datetime(2026, 12, 7, tzinfo=timezone.utc)
    metrics = tmp_path / "metrics"
    for i, (n, share) in enumerate([(1_000, 0.02), (10_000, 0.45)]):
        start = t0 + timedelta(hours=i)
        write_stage_record(metrics, StageRecord(
            record_id=f"r{i}", run_id=f"run{i}", stage="embeddings", backend="reference", profile="offline",
            profile_hash="h", scale=str(n), scale_n=n, status="success", started_at=start,
            finished_at=start + timedelta(seconds=10), wall_s=10.0, rss_start_mb=100.0, peak_rss_mb=200.0,
            metered=True, host_contention=share, host_other_cpu_s=share * 20, contended=is_contended(share),
            host_fingerprint="h1", host_cpu="cpu", host_cores=2, host_ram_gb=4.0, host_os="Linux"))
    analysis = analyse(load_report_data(metrics))
    matrix = t.published_matrix(analysis, ["offline"], [1_000, 10_000])
    rows = {row[1].text: row for row in matrix.rows}
    assert "⚠ contended: 1 of 1 stage records" in rows["10K"][-1].text
    assert "contended" not in rows["1K"][-1].text
    assert "⚠ contended: 1 of 2 stage records" in matrix.caption
    per_profile = {row[0].text: row for row in t.test_matrix(analysis.profiles["offline"]).rows}
    assert "⚠ contended 1/1" in per_profile["10K"][-1].text and "⚠" not in per_profile["1K"][-1].text
    headline = {row[1].text: row for row in t.headline_table(analysis).rows}
    assert "⚠ contended 1/1" in headline["10K"][-1].text
