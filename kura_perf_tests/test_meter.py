import json
import re
import subprocess
import sys
import time

import numpy as np
import pytest

from kura_perf.errors import BreakingPoint
from kura_perf.meter import Meter, memory
from kura_perf.meter.meter import _downsample

PROBE = """
import json, sys, time
from kura_perf.meter import Meter
mb = int(sys.argv[1])
with Meter("probe") as m:
    block = bytearray(mb * 2**20)
    for i in range(0, len(block), 4096):
        block[i] = 1
    t = time.process_time()
    while time.process_time() - t < 0.5:
        pass
    del block
print(json.dumps(m.measurement.__dict__))
"""


def test_peak_tracks_allocation_inside_block():
    with Meter("alloc") as m:
        block = np.ones(200 * 2**20 // 8)  # 200 MB, touched
        del block
    meas = m.measurement
    assert meas.peak_method in ("vmhwm", "sampler")
    assert meas.peak_rss_mb - meas.rss_start_mb == pytest.approx(200, abs=25)
    assert meas.rss_end_mb < meas.peak_rss_mb - 150  # released again, and the peak remembers it


def test_peak_is_reset_per_block():
    with Meter("big"):
        big = np.ones(150 * 2**20 // 8)
        del big
    with Meter("small") as small:
        x = np.ones(10 * 2**20 // 8)
        del x
    assert small.measurement.peak_rss_mb - small.measurement.rss_start_mb < 60


def test_peak_agrees_with_usr_bin_time(tmp_path):
    """The meter's peak must match an independent measurement within 5%."""
    time_bin = "/usr/bin/time"
    proc = subprocess.run([time_bin, "-v", sys.executable, "-c", PROBE, "400"], capture_output=True, text=True,
                          check=True)
    measured = json.loads(proc.stdout.strip().splitlines()[-1])
    max_rss_mb = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", proc.stderr).group(1)) / 1024
    assert measured["peak_rss_mb"] == pytest.approx(max_rss_mb, rel=0.05)
    user = float(re.search(r"User time \(seconds\): ([\d.]+)", proc.stderr).group(1))
    system = float(re.search(r"System time \(seconds\): ([\d.]+)", proc.stderr).group(1))
    # The block is only part of the process's CPU (interpreter start and imports are outside it).
    assert 0.4 < measured["cpu_user_s"] + measured["cpu_sys_s"] <= user + system + 0.02


def test_sampler_cost_is_bounded_by_its_interval_and_recorded():
    """The meter's own cost, by construction rather than by a wall-clock ratio (which flakes on a shared
    machine): the sampler takes one sample per interval at most, and the CPU its thread used is recorded
    (meter_cpu_s, a part of the process's CPU). The overhead figure itself is in every stage record."""
    interval = 0.05
    with Meter("busy", interval_s=interval) as m:
        t = time.perf_counter()
        while time.perf_counter() - t < 0.6:
            sum(range(1000))
    ms = m.measurement
    assert 1 <= len(ms.timeline_s) <= ms.wall_s / interval + 2
    gaps = np.diff(ms.timeline_s)
    assert (gaps >= interval - 0.002).all()  # never more often than its interval (timestamps kept to 1 ms)
    assert 0.0 <= ms.meter_cpu_s <= ms.cpu_user_s + ms.cpu_sys_s + 0.02


def test_disabled_meter_measures_time_only():
    with Meter("off", enabled=False) as m:
        time.sleep(0.05)
    assert m.measurement.wall_s >= 0.05
    assert np.isnan(m.measurement.peak_rss_mb)
    assert m.measurement.timeline_mb == []
    assert m.measurement.metered is False


def test_memory_guard_turns_runaway_into_breaking_point():
    limit = memory.rss_mb() + 150
    chunks = []
    with pytest.raises(BreakingPoint) as info:
        with Meter("runaway", memory_limit_mb=limit, interval_s=0.01):
            for _ in range(400):  # would reach ~4 GB
                chunks.append(np.ones(10 * 2**20 // 8))
                time.sleep(0.002)
    chunks.clear()
    assert "memory limit" in str(info.value)
    assert info.value.stage == "runaway"
    assert info.value.peak_rss_mb >= limit


def test_time_guard_stops_a_stage_that_runs_too_long():
    t0 = time.perf_counter()
    with pytest.raises(BreakingPoint, match="time limit"):
        with Meter("slow", timeout_s=0.3, interval_s=0.02):
            while True:
                time.sleep(0.01)
    assert time.perf_counter() - t0 < 5


def test_guard_interrupt_is_not_swallowed_by_except_exception():
    with pytest.raises(BreakingPoint):
        with Meter("stubborn", timeout_s=0.2, interval_s=0.02):
            for _ in range(1000):
                try:
                    time.sleep(0.01)
                except Exception:  # a stage's own handler must not eat the guard
                    pass


def test_downsample_keeps_peaks():
    ts = list(range(10_000))
    mb = [1.0] * 10_000
    mb[4321] = 99.0
    out_t, out_m = _downsample(ts, mb, 100)
    assert len(out_t) == 100
    assert max(out_m) == 99.0 and 4321 in out_t


def test_failed_block_still_measured():
    with pytest.raises(ValueError):
        with Meter("boom") as m:
            time.sleep(0.02)
            raise ValueError("x")
    assert m.measurement.wall_s >= 0.02 and m.measurement.finished_at > 0


UNRESPONSIVE = """
import json, sys, time, ctypes
from kura_perf.meter import Meter
def stop(m):
    print(json.dumps({"reason": m.guard_reason, "wall": m.wall_s}), flush=True)
    import os; os._exit(75)
with Meter("stuck", timeout_s=0.3, interval_s=0.02, on_unresponsive=stop, grace_s=0.5):
    # A long call into C that never returns to Python bytecode: the async interrupt cannot land.
    libc = ctypes.CDLL(None)
    libc.sleep(30)
print("not reached")
"""


def test_stage_stuck_in_native_code_is_recorded_and_stopped():
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", UNRESPONSIVE], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 75
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert "time limit" in out["reason"] and "did not stop" in out["reason"]
    assert time.perf_counter() - t0 < 25


def test_interrupt_landing_before_the_block_still_finishes_the_measurement():
    from kura_perf.meter.meter import StageInterrupted

    meter = Meter("early", memory_limit_mb=1, interval_s=0.001)  # fires at the first sample
    try:
        with meter:
            time.sleep(1)
    except (StageInterrupted, BreakingPoint):
        meter.finish()
    m = meter.measurement
    assert m.guard_reason and m.wall_s > 0 and m.peak_rss_mb > 0
    assert not meter._thread.is_alive()
