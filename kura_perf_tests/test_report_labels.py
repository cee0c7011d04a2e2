"""Issue 20: the report's storage and hardware figures say what was measured, in the right units.

One fabricated store (offline at 1K, 10K and 100K, one run each, stages one after another with gaps
between them, a process already holding ~1 GB before each stage) and the HTML page built from it:
every check reads the rendered page's text and cell classes, or the series a figure draws.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from kura_perf.report import figures, fmt
from kura_perf.report.analysis import analyse
from kura_perf.report.build import build_report
from kura_perf.report.data import load_report_data
from kura_perf.settings.paths import Paths
from kura_perf.store import write_records
from kura_perf_tests.test_report import STAGES, T0, _stage_record, parse

SCALES = (("1k", 1_000), ("10k", 10_000), ("100k", 100_000))
GAP_S = 2.0  # between one stage's end and the next one's start (step hand-offs)
# Bytes per conversation the conversations stage writes: at 100K 94.1e6 bytes (issue 20's "89.8 MB"); at 10K
# a different rate, so a measured 10K cell cannot be mistaken for the 100K rate projected down.
CONV_BYTES = {1_000: 1_100, 10_000: 1_000, 100_000: 941}
RESIDENT_MB = 1000.0  # RSS before the stage: interpreter, libraries, models (MiB, as the meter records)


def _start_mb(stage: str, n: int) -> float:
    # The 1K run's process held more before each stage than the later runs' (another model cache state):
    # the measured 1K peaks sit above what the model (start RSS at the largest scale + growth) says at 1K.
    return RESIDENT_MB + (150.0 if n == 1_000 else 0.0) + 5 * STAGES.index(stage)


def _growth_mb(stage: str, n: int) -> float:
    return (0.02 if stage != "meta_clusters" else 0.001) * n ** 0.9


def write_labels_store(root: Path) -> dict:
    """Returns what the records say per scale: the stages' summed wall and the run's first-start→last-end."""
    records, truth = [], {}
    for i, (label, n) in enumerate(SCALES, start=1):
        t = T0 + timedelta(days=i)
        first, walls = t, 0.0
        for stage in STAGES:
            r = _stage_record(i, f"run-{label}", stage, n, label)
            start = _start_mb(stage, n)
            extra = {"started_at": t, "finished_at": t + timedelta(seconds=r["wall_s"]),
                     "rss_start_mb": start, "peak_rss_mb": start + _growth_mb(stage, n)}
            if stage == "conversations":
                extra["bytes_written"] = n * CONV_BYTES[n]
            records.append({**r, "record_id": f"{label}-{stage}", **extra})
            walls += r["wall_s"]
            t = extra["finished_at"] + timedelta(seconds=GAP_S)
        truth[n] = SimpleNamespace(stages_sum=walls, span=(t - timedelta(seconds=GAP_S) - first).total_seconds())
    write_records(root / "metrics", "stage_runs", records)
    return truth


@pytest.fixture(scope="module")
def page(tmp_path_factory):
    root = tmp_path_factory.mktemp("labels")
    truth = write_labels_store(root)
    result = build_report(Paths(root))
    html = result.index_html.read_text(encoding="utf-8")
    return SimpleNamespace(html=html, tables=parse(html).tables, truth=truth,
                           analysis=analyse(load_report_data(root / "metrics")))


# -- 1: every storage cell marked by the data behind it -----------------------------------------------

def test_storage_cells_are_marked_measured_where_the_stage_ran_at_that_scale(page):
    rows = page.tables["storage-offline"]
    headers = [text for _, text in rows[0]]
    col = {n: headers.index(f"@ {fmt.conversations(n)}") for n in (10_000, 100_000, 1_000_000)}
    conv = next(r for r in rows[1:] if r[0][1] == "conversations")
    # measured at 10K and 100K: what was written there, marked measured; 1M: projected from 100K's rate
    assert conv[col[10_000]] == ("measured", fmt.nbytes(10_000 * CONV_BYTES[10_000]))
    assert conv[col[100_000]] == ("measured", fmt.nbytes(100_000 * CONV_BYTES[100_000]))
    assert conv[col[1_000_000]] == ("extrapolated", fmt.nbytes(1_000_000 * CONV_BYTES[100_000]))
    total = next(r for r in rows[1:] if r[0][1] == "total")
    assert total[col[10_000]][0] == "measured" and total[col[1_000_000]][0] == "extrapolated"
    assert not any(h.startswith("Projected @") for h in headers)  # a column is no longer named by one kind
    assert "td.measured::after" in page.html and "marked ⁽ᵐ⁾" in page.html  # the mark is shown and explained


# -- 2: one byte convention, decimal -------------------------------------------------------------------

def test_bytes_are_decimal_everywhere_and_the_page_says_so():
    assert fmt.nbytes(94.1e6) == "94.1 MB" and fmt.nbytes(1.5e9) == "1.5 GB" and fmt.nbytes(2_500) == "2.5 kB"
    assert fmt.kilobytes(1.56) == "1.56 kB"
    assert fmt.megabytes(1000.0) == "1.0 GB"  # 1000 MiB = 1.049e9 bytes, not "1000 MB"
    assert fmt.megabytes(500.0) == "524 MB"


def test_the_page_shows_94_1_mb_for_94_1e6_bytes_and_names_the_convention(page):
    assert "94.1 MB" in page.html and "89.7 MB" not in page.html and "89.8 MB" not in page.html
    assert "1 MB = 10⁶ bytes" in page.html and "du --si" in page.html
    conv = next(r for r in page.tables["storage-offline"][1:] if r[0][1] == "conversations")
    assert conv[1][1] == "0.94 kB"  # 941 bytes per conversation, not 941/1024
    assert " KB" not in page.html  # the 1024-based label is gone


def test_figure_memory_axes_are_decimal():
    assert figures._tick_memory(2000, gb=True) == "2 GB" and figures._memory_unit(2000) == (1000.0, "GB")


# -- 3 and 4: the hardware table names what each time and memory figure is -----------------------------

def _hardware(page) -> dict:
    rows = page.tables["hardware"]
    headers = [text for _, text in rows[0]]
    return {"headers": headers, **{r[0][1]: dict(zip(headers, r)) for r in rows[1:]}}


def test_hardware_shows_the_stages_sum_and_the_run_wall_labelled(page):
    hw = _hardware(page)
    sum_col = next(h for h in hw["headers"] if "Stages' wall summed" in h)
    run_col = next(h for h in hw["headers"] if h.startswith("Run wall"))
    assert "first stage start → last stage end" in run_col and "start-up before the first stage not recorded" in run_col
    truth = page.truth[1_000]
    assert hw["1K"][sum_col][1] == f"stages' sum {fmt.seconds(truth.stages_sum)}"
    assert hw["1K"][run_col] == ("measured", f"run wall {fmt.seconds(truth.span)}")
    assert truth.span > truth.stages_sum  # the gaps between stages are in the run, not in the sum
    assert hw["1M"][run_col] == ("unknown", "no complete run recorded")  # never presented as a run
    assert "One full run on this host" not in page.html and "One run on this host" not in page.html


def test_hardware_shows_the_stage_growth_beside_the_process_peak(page):
    hw = _hardware(page)
    peak_col = next(h for h in hw["headers"] if h.startswith("Process peak RSS"))
    growth_col = next(h for h in hw["headers"] if "growth, peak − start" in h)
    n = 100_000
    peaks = {s: _start_mb(s, n) + _growth_mb(s, n) for s in STAGES}
    top = max(peaks, key=peaks.get)
    grown = max(STAGES, key=lambda s: _growth_mb(s, n))
    assert hw["100K"][peak_col][1] == f"process peak {fmt.megabytes(peaks[top])} (during {top})"
    assert hw["100K"][growth_col][1] == f"stage growth {fmt.megabytes(_growth_mb(grown, n))} ({grown})"
    assert _growth_mb(grown, n) < 0.5 * peaks[top]  # the fabricated case: most of the peak predates the stage
    assert hw["1M"][growth_col][0] == "extrapolated"


# -- 5: the peak-RSS fit line is as monotone as its model ----------------------------------------------

def test_the_peak_fit_line_is_monotone_over_the_plotted_range(page):
    pa = page.analysis.profiles["offline"]
    grid = np.logspace(np.log10(min(pa.scales)), np.log10(figures.EXTRAPOLATION_LIMIT), 60)
    for stage, fit in pa.fits.items():
        series = np.asarray(figures.peak_fit_series(fit, grid))
        assert np.all(np.isfinite(series)), stage
        assert np.all(np.diff(series) >= 0), (stage, series[:4])  # growth exponent 0.9 > 0: never dips
    # the store does hold the case that made the line jump: the measured 1K peak above the model beside it
    fit = pa.fits["summaries"]
    assert fit.peak_at(1_000).value > fit.peak_model(grid[1])
