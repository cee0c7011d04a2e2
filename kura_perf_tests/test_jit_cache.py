"""numba's compile time is its own figure (issue 20): timed once per outermost compile, never above
the wall it is part of, and cached across processes, so a second process compiles nothing."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from kura_perf.models import jit_cache
from kura_perf.models.jit_cache import CompileClock, JitWatch
from kura_perf.pipeline.records import work_figures

REPO = Path(__file__).resolve().parents[1]

# One process's clustering (UMAP-reduced HDBSCAN, the reference default) and projection (UMAP) under a
# JitWatch, as a stage runs them; prints the watch's report and the block's own wall.
_CHILD = textwrap.dedent("""
    import json, sys, time
    from pathlib import Path
    from kura_perf.models.jit_cache import JitWatch, configure
    configure(Path(sys.argv[1]))
    import numpy as np
    from kura_perf.models.clustering import UMAPHDBSCANMethod
    from kura_perf.models.projection import UMAPProjection
    vectors = np.random.default_rng(0).normal(size=(300, 16)).astype(np.float32)
    started = time.perf_counter()
    watch = JitWatch()
    UMAPHDBSCANMethod().fit_predict(vectors)
    UMAPProjection().fit_transform(vectors)
    report = watch.report()
    wall = time.perf_counter() - started
    print(json.dumps({**report.as_dict(), "jit_compiled": report.jit_compiled, "raw_compile_s": report.compile_s,
                      "wall_s": wall}))
""")


def _child_run(root: Path) -> dict:
    env = {key: value for key, value in os.environ.items() if key != "NUMBA_CACHE_DIR"}
    env["PYTHONPATH"] = str(REPO)
    done = subprocess.run([sys.executable, "-c", _CHILD, str(root)], env=env, capture_output=True, text=True,
                          timeout=600, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_a_second_process_with_the_same_cache_compiles_nothing(tmp_path):
    first = _child_run(tmp_path)
    assert first["cache_dir"] == str((tmp_path / "cache" / "numba").resolve())
    assert first["compiled"] > 0 and first["cache_files_added"] > 0  # a fresh cache: everything compiled, saved
    assert 0 < first["raw_compile_s"] <= first["wall_s"]  # compile is part of the block's wall, never more
    assert first["startup_s"] > 0  # the first umap import, per process, apart from the compiles during it
    assert first["raw_compile_s"] + first["startup_s"] <= first["wall_s"]

    second = _child_run(tmp_path)
    assert second["jit_compiled"] is False
    assert second["compiled"] == 0 and second["compile_s"] == 0
    assert second["from_cache"] > 0  # served from the disk cache, umap's eagerly compiled helpers included
    assert second["cache_files_added"] == 0
    assert second["startup_s"] > 0  # importing is still paid per process


def test_nested_compiles_count_once(monkeypatch):
    """A caller's compile contains its callees' compiles: the clock counts the outer interval once."""
    now = [0.0]
    monkeypatch.setattr(jit_cache.time, "perf_counter", lambda: now[0])
    clock = CompileClock()
    for at, step in ((0, "start"), (1, "start"), (3, "end"), (4, "end"),  # outer 0-4 holding inner 1-3
                     (10, "start"), (11, "end")):  # another top-level compile
        now[0] = float(at)
        (clock.on_start if step == "start" else clock.on_end)(None)
    assert clock.reading() == (5.0, 3)


def test_compile_seconds_of_a_nested_chain_stay_within_the_wall():
    """Real numba: a chain of functions each calling the next, compiled fresh (no cache). Summing each
    function's own compile timer (what compile_s was) counts the deepest compile once per level."""
    numba = pytest.importorskip("numba")
    jit_cache.compile_clock()
    salt = time.perf_counter_ns()  # distinct constants: nothing from an earlier test run's memory

    @numba.njit
    def f0(x):
        return x * 2 + salt % 7

    @numba.njit
    def f1(x):
        return f0(x) + f0(x + 1)

    @numba.njit
    def f2(x):
        return f1(x) * f1(x - 1)

    @numba.njit
    def f3(x):
        return f2(x) - f2(x + 2)

    started = time.perf_counter()
    watch = JitWatch()
    f3(3)
    report = watch.report()
    wall = time.perf_counter() - started
    assert report.compiled >= 4 and report.jit_compiled
    assert 0 < report.compile_s <= wall
    timers = sum(next(iter(f.overloads.values())).metadata["timers"]["compiler_lock"] for f in (f0, f1, f2, f3))
    assert timers > report.compile_s  # the old per-function sum double-counts the nesting


def test_work_time_is_the_wall_without_compile_and_start_up_and_never_negative():
    assert work_figures(10.0, 4.0) == {"jit_compile_s": 4.0, "startup_s": None, "stage_work_s": 6.0}
    assert work_figures(10.0, 4.0, 1.5) == {"jit_compile_s": 4.0, "startup_s": 1.5, "stage_work_s": 4.5}
    assert work_figures(10.0, 12.0, 1.0) == {"jit_compile_s": 10.0, "startup_s": 0.0,  # never above its wall
                                             "stage_work_s": 0.0}
    assert work_figures(10.0, None) == {"jit_compile_s": None, "startup_s": None, "stage_work_s": 10.0}
    assert work_figures(None, 3.0) == {"jit_compile_s": 3.0, "startup_s": None, "stage_work_s": None}


def test_a_stage_record_keeps_compile_and_set_up_apart_from_the_work(kp_home):
    """metered_run: numba's compile inside the stage is jit_compile_s (within wall_s), the rest is
    stage_work_s, and the backend's prepare (a model load) is setup_s outside the wall; all three stored."""
    numba = pytest.importorskip("numba")
    from kura_perf.files.outputs import StageData
    from kura_perf.pipeline.metered import metered_run
    from kura_perf.pipeline.runner import StageRun
    from kura_perf.profiles import get_profile
    from kura_perf.settings.paths import Paths
    from kura_perf.settings.run import RunSettings
    from kura_perf.stages.base import StageResult
    from kura_perf.store import query

    salt = time.perf_counter_ns()
    prepared = []

    def body(progress):
        @numba.njit
        def inner(x):
            return x + salt % 11

        @numba.njit
        def outer(x):
            return inner(x) * inner(x + 1)

        outer(2)
        return StageResult(StageData(tables={}), items_in=1, items_out=1), 0

    run = StageRun("clusters", get_profile("offline"), "100", settings=RunSettings.from_env(paths=Paths(kp_home)))
    record = metered_run(run, body, backend_name="stand-in", prepare=lambda: prepared.append(1))
    assert prepared == [1]
    assert record.jit_compiled is True
    assert 0 < record.jit_compile_s <= record.wall_s
    assert record.stage_work_s == pytest.approx(record.wall_s - record.jit_compile_s)
    assert record.setup_s is not None and record.setup_s >= 0
    stored = query(kp_home / "metrics", "SELECT jit_compile_s, stage_work_s, setup_s FROM stage_runs")
    assert stored.iloc[0].tolist() == pytest.approx([record.jit_compile_s, record.stage_work_s, record.setup_s])
