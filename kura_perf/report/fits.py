"""Power-law fits of cost against conversations, and the projections made from them.

Costs are fitted as value = c * n^b by least squares on (log n, log value). The exponent b is the
headline: b = 1 is linear, b = 2 means ten times the data costs a hundred times as much. A fit
needs at least two distinct scales; with one there is no slope to fit and projections say so.

Peak memory is projected as the stage's starting RSS (what was already resident: interpreter,
libraries, earlier data) plus its growth during the stage fitted as a power law. Fitting the
absolute peak directly would let the fixed ~0.5 GB of libraries flatten the slope at small scales
and badly underestimate a 1M run.

Time is fitted on the stage's work (`work_s`: the record's stage_work_s, the wall without numba's
compile and the process's first umap import), not the raw wall: a compile of 18 s in a 19 s 1K stage is paid once per machine, not per
conversation, and fitted as time it flattened clusters to n^0.39 (issue 20). Records older than
stage_work_s fall back to their wall (their compile figure was not trustworthy). The compile, the
start-up and the backend's set-up (model loads) are kept beside the fit as their own medians
(jit_compile_s, startup_s, setup_s).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from kura_perf.report import fmt

MEASURED = "measured"
INTERPOLATED = "interpolated"
EXTRAPOLATED = "extrapolated"
PROJECTED = "projected"  # a stage stopped at a limit, its total wall projected from its own progress
UNKNOWN = "unknown"
# Weakest last: a combined figure (a pipeline total) takes the weakest basis among its parts.
BASIS_ORDER = (MEASURED, INTERPOLATED, PROJECTED, EXTRAPOLATED)

# Fewest measured scales a fit may be carried beyond them with (the 1M column, breaking points, tiers):
# two points always fit a line exactly, so R² says nothing until there are three.
MIN_FIT_SCALES = 3
MIN_GROWTH_MB = 1.0  # growth below this is noise; floored so the log stays defined


@dataclass(frozen=True)
class PowerLaw:
    coefficient: float
    exponent: float
    r2: float | None  # None with exactly two points (the line passes through both)
    scales: tuple[int, ...]  # the distinct conversation counts the fit used

    def predict(self, n: float) -> float:
        return float(self.coefficient * float(n) ** self.exponent)

    def basis(self, n: int) -> str:
        lo, hi = min(self.scales), max(self.scales)
        return INTERPOLATED if lo <= n <= hi else EXTRAPOLATED

    def describe(self) -> str:
        r2 = f", R² {self.r2:.3f}" if self.r2 is not None else ""
        return (f"{fmt.exponent(self.exponent)} from {len(self.scales)} scales "
                f"({fmt.conversations(min(self.scales))}–{fmt.conversations(max(self.scales))}{r2})")


def fit_power_law(ns, values) -> PowerLaw | None:
    """Least squares on log values; None with fewer than two distinct scales (no slope to fit)."""
    n = np.asarray(ns, dtype=float)
    v = np.asarray(values, dtype=float)
    keep = np.isfinite(n) & np.isfinite(v) & (n > 0) & (v > 0)
    n, v = n[keep], v[keep]
    distinct = tuple(sorted({int(x) for x in n}))
    if len(distinct) < 2:
        return None
    x, y = np.log(n), np.log(v)
    slope, intercept = np.polyfit(x, y, 1)
    r2 = None
    if len(x) > 2:
        residual = float(np.sum((y - (slope * x + intercept)) ** 2))
        total = float(np.sum((y - y.mean()) ** 2))
        r2 = 1.0 - residual / total if total > 0 else 1.0
    return PowerLaw(float(np.exp(intercept)), float(slope), r2, distinct)


@dataclass(frozen=True)
class Estimate:
    """A figure at some scale, and whether it was measured there or projected by a fit."""

    value: float | None
    basis: str  # measured | interpolated | projected | extrapolated | unknown
    note: str = ""

    @property
    def projected(self) -> bool:
        return self.basis in (INTERPOLATED, PROJECTED, EXTRAPOLATED)


@dataclass
class StageFit:
    """One stage's measured medians per scale and the fits through them."""

    stage: str
    # scale_n, wall_s, work_s, jit_compile_s, startup_s, setup_s, peak_rss_mb, rss_start_mb, peak_growth_mb (medians per scale)
    measured: pd.DataFrame
    wall: PowerLaw | None
    peak: PowerLaw | None
    growth: PowerLaw | None
    start_mb: float | None  # starting RSS at the largest measured scale

    def __post_init__(self) -> None:
        self._by_n = {int(row["scale_n"]): row for row in self.measured.to_dict("records")}

    @property
    def largest_n(self) -> int:
        return int(self.measured["scale_n"].max())

    def _measured_at(self, n: int, column: str) -> float | None:
        row = self._by_n.get(int(n))
        if row is None or fmt.is_missing(row.get(column)):
            return None
        return float(row[column])

    def wall_at(self, n: int) -> Estimate:
        """The stage's work time at n (without numba's compile: work_s), measured or fitted."""
        if (value := self._measured_at(n, "work_s")) is not None:
            return Estimate(value, MEASURED)
        if self.wall is None:
            return Estimate(None, UNKNOWN, "one scale measured: no fit")
        return Estimate(self.wall.predict(n), self.wall.basis(n), self.wall.describe())

    def peak_at(self, n: int) -> Estimate:
        if (value := self._measured_at(n, "peak_rss_mb")) is not None:
            return Estimate(value, MEASURED)
        if self.growth is not None and self.start_mb is not None:
            value = self.start_mb + self.growth.predict(n)
            return Estimate(value, self.growth.basis(n), f"start RSS + growth {self.growth.describe()}")
        if self.peak is not None:
            return Estimate(self.peak.predict(n), self.peak.basis(n), self.peak.describe())
        return Estimate(None, UNKNOWN, "one scale measured: no fit")

    def peak_model(self, n: float) -> float | None:
        """The fitted peak at n, never a measured value: start RSS + fitted growth (or the fitted absolute peak).
        What a fit line draws. peak_at swaps in the measured median at a measured scale, and that median
        carries its own run's start RSS, not the largest scale's the model uses: a line through peak_at
        jumped to the measurement at a measured grid point and dipped back to the model beside it."""
        if self.growth is not None and self.start_mb is not None:
            return self.start_mb + self.growth.predict(n)
        if self.peak is not None:
            return self.peak.predict(n)
        return None

    def growth_at(self, n: int) -> Estimate:
        """The stage's own memory growth (peak − RSS at its start) at n: measured median, else fitted."""
        if (value := self._measured_at(n, "peak_growth_mb")) is not None:
            return Estimate(max(value, 0.0), MEASURED)
        if self.growth is None:
            return Estimate(None, UNKNOWN, "one scale measured: no fit")
        return Estimate(self.growth.predict(n), self.growth.basis(n), self.growth.describe())


def work_seconds(records: pd.DataFrame) -> pd.Series:
    """Each record's work time: stage_work_s (the wall without numba's compile and start-up), else its wall_s."""
    wall = pd.to_numeric(records["wall_s"], errors="coerce")
    if "stage_work_s" not in records:
        return wall
    return pd.to_numeric(records["stage_work_s"], errors="coerce").fillna(wall)


def _median_per_scale(records: pd.DataFrame) -> pd.DataFrame:
    df = records.copy()
    df["peak_growth_mb"] = df["peak_rss_mb"] - df["rss_start_mb"]
    df["work_s"] = work_seconds(df)
    for column in ("jit_compile_s", "startup_s", "setup_s"):  # absent from frames of older stores
        df[column] = pd.to_numeric(df[column], errors="coerce") if column in df else np.nan
    cols = ["wall_s", "work_s", "jit_compile_s", "startup_s", "setup_s", "peak_rss_mb", "rss_start_mb", "peak_growth_mb"]
    return df.groupby("scale_n", as_index=False)[cols].median(numeric_only=True).sort_values("scale_n")


def fit_stage(stage: str, records: pd.DataFrame) -> StageFit:
    """Fit one stage from its successful records (one host, one profile) across scales."""
    measured = _median_per_scale(records)
    growth_values = measured["peak_growth_mb"].clip(lower=MIN_GROWTH_MB)
    has_start = measured["rss_start_mb"].notna().all()
    growth = fit_power_law(measured["scale_n"], growth_values) if has_start else None
    start = None
    if has_start and len(measured):
        start = float(measured["rss_start_mb"].iloc[-1])
    return StageFit(
        stage=stage,
        measured=measured,
        wall=fit_power_law(measured["scale_n"], measured["work_s"]),
        peak=fit_power_law(measured["scale_n"], measured["peak_rss_mb"]),
        growth=growth,
        start_mb=start,
    )


def fit_stages(records: pd.DataFrame, stage_order: list[str]) -> dict[str, StageFit]:
    """Fits for every stage with successful records, in pipeline order."""
    ok = records[records["status"] == "success"]
    return {stage: fit_stage(stage, ok[ok["stage"] == stage])
            for stage in stage_order if (ok["stage"] == stage).any()}
