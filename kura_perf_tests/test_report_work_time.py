"""The report's shares, fits and projections use the stages' work time, never numba's compile or the
set-up (issue 20): a large one-time compile must not flatten a fit nor make a stage dominate."""

from __future__ import annotations

from types import SimpleNamespace

import pandas as pd
import pytest

from kura_perf.report.fits import fit_stages
from kura_perf.report.guidance import _dominant, one_time_costs

SCALES = (1_000, 10_000, 100_000)
COMPILE_S = 60.0  # one-time (compile 58 s + umap import 2 s), as big as the clusters records


def _records(with_columns: bool = True) -> pd.DataFrame:
    rows = []
    for n in SCALES:
        # clusters: linear work (1 ms per conversation) plus the compile; embeddings: linear, 2 ms each
        clusters_work, embeddings_work = n * 0.001, n * 0.002
        rows.append({"stage": "clusters", "scale_n": n, "status": "success", "wall_s": clusters_work + COMPILE_S,
                     "jit_compile_s": COMPILE_S - 2.0, "startup_s": 2.0, "stage_work_s": clusters_work,
                     "setup_s": None,
                     "peak_rss_mb": 500.0, "rss_start_mb": 400.0})
        rows.append({"stage": "embeddings", "scale_n": n, "status": "success", "wall_s": embeddings_work,
                     "jit_compile_s": 0.0, "startup_s": None, "stage_work_s": embeddings_work, "setup_s": 3.0,
                     "peak_rss_mb": 600.0, "rss_start_mb": 400.0})
    df = pd.DataFrame(rows)
    if not with_columns:  # a store written before these columns: they read as NULL / are absent
        df = df.drop(columns=["jit_compile_s", "startup_s", "stage_work_s", "setup_s"])
    return df


def test_the_time_fit_excludes_the_compile_seconds():
    fits = fit_stages(_records(), ["embeddings", "clusters"])
    assert fits["clusters"].wall.exponent == pytest.approx(1.0, abs=1e-6)  # the work, not n^0.4 from the compile
    assert fits["clusters"].wall_at(1_000).value == pytest.approx(1.0)  # measured work, 61 s wall
    assert fits["clusters"].wall_at(1_000).value < fits["clusters"].measured["wall_s"].iloc[0]


def test_shares_exclude_the_compile_and_it_is_shown_on_its_own():
    pa = SimpleNamespace(fits=fit_stages(_records(), ["embeddings", "clusters"]))
    stage, share, basis = _dominant(pa, 1_000, "wall")
    assert stage == "embeddings" and share == pytest.approx(2 / 3)  # by wall, clusters would be 61 of 63 s
    line = one_time_costs(pa)
    assert "clusters" in line and "JIT compile" in line and "one-time per machine" in line
    assert "library start-up" in line
    assert "embeddings" in line and "set-up" in line and "per process" in line


def test_older_records_without_the_columns_still_fit_on_their_wall():
    fits = fit_stages(_records(with_columns=False), ["embeddings", "clusters"])
    assert fits["clusters"].wall_at(1_000).value == pytest.approx(1.0 + COMPILE_S)
    assert one_time_costs(SimpleNamespace(fits=fits)) is None
