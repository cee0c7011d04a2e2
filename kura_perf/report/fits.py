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

Beyond the largest measured scale one power law over every scale is not enough: at 100 and 1K conversations a
stage is mostly fixed overhead and API waiting, and a single fit through them hides a super-linear CPU term
that only shows at the top (Kura's clusters: work 5.5 / 11.8 / 139.6 s and CPU 1.7 / 3.7 / 114 s at
100 / 1K / 10K fit n^0.70 overall, but CPU grows n^1.49 from 1K to 10K: its contrastive sampling is O(n²)
and did not finish at 100K). So with at least MIN_FIT_SCALES measured scales a stage's time at n past its
largest scale is the LARGEST of (time_projection):

  the global fit          c * n^b over every measured scale;
  the time tail           the work time at the largest scale, extended along the slope between the two
                          largest scales' median work times;
  the CPU tail            the CPU seconds (user + sys) at the largest scale, extended along the slope between
                          the two largest scales' median CPU, turned into wall by the parallelism measured at
                          the largest scale: cpu x min(1, work / cpu). Capped at 1 so waiting (work > CPU)
                          never inflates CPU, while several cores (work < CPU) do shorten it;

never below the work measured at the largest scale, and labelled with the one that won. A well-behaved stage
(its tail no steeper than its global fit) keeps the global fit's figure. Between measured scales, and with
fewer scales, the global fit alone is used as before.
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
# A CPU tail exponent above this is flagged: clearly worse than linear (n log n over a decade is ~n^1.1), the
# mark of a quadratic step the small scales hid.
SUPERLINEAR_CPU = 1.2
TIE_TOLERANCE = 1e-9  # relative: a tail equal to the global fit up to rounding does not replace it


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
class Tail:
    """The slope between the two largest measured scales' medians: what the top of the range grows like."""

    exponent: float
    lo_n: int
    hi_n: int
    value: float  # the median at hi_n

    def predict(self, n: float) -> float:
        return float(self.value * (float(n) / self.hi_n) ** self.exponent)

    def span(self) -> str:
        return f"{fmt.conversations(self.lo_n)}→{fmt.conversations(self.hi_n)}"


def tail_slope(ns, values) -> Tail | None:
    """The log-log slope between the two largest scales with a positive value; None with fewer than two."""
    points = sorted((int(n), float(v)) for n, v in zip(ns, values)
                    if not fmt.is_missing(n) and not fmt.is_missing(v) and n > 0 and v > 0)
    if len(points) < 2 or points[-2][0] == points[-1][0]:
        return None
    (lo_n, lo_v), (hi_n, hi_v) = points[-2], points[-1]
    return Tail(float(np.log(hi_v / lo_v) / np.log(hi_n / lo_n)), lo_n, hi_n, hi_v)


@dataclass(frozen=True)
class TimeProjection:
    """A stage's work time past its largest measured scale and which projection gave it (fits.py docstring)."""

    value: float
    source: str  # "global fit" | "time tail" | "CPU tail"
    label: str  # e.g. "CPU tail n^1.49 (1K→10K)"

    @property
    def from_tail(self) -> bool:
        return self.source != "global fit"


@dataclass(frozen=True)
class Estimate:
    """A figure at some scale, and whether it was measured there or projected by a fit."""

    value: float | None
    basis: str  # measured | interpolated | projected | extrapolated | unknown
    note: str = ""
    method: str = ""  # set when a tail, not the global fit, gave a figure past the measured scales

    @property
    def projected(self) -> bool:
        return self.basis in (INTERPOLATED, PROJECTED, EXTRAPOLATED)


@dataclass
class StageFit:
    """One stage's measured medians per scale and the fits through them."""

    stage: str
    # scale_n, wall_s, work_s, cpu_s, jit_compile_s, startup_s, setup_s, peak_rss_mb, rss_start_mb, peak_growth_mb
    # (medians per scale)
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

    @property
    def work_tail(self) -> Tail | None:
        """Slope of the median work time between the two largest measured scales."""
        return tail_slope(self.measured["scale_n"], self.measured["work_s"])

    @property
    def cpu_tail(self) -> Tail | None:
        """Slope of the median CPU seconds (user + sys) between the two largest measured scales."""
        if "cpu_s" not in self.measured:
            return None
        return tail_slope(self.measured["scale_n"], self.measured["cpu_s"])

    def time_projection(self, n: int) -> TimeProjection | None:
        """The work time at n past the largest measured scale: the largest of the global fit, the time tail
        and the CPU tail (module docstring); None within the measured range or with fewer than
        MIN_FIT_SCALES measured scales (the global fit alone then, as wall_at does)."""
        if self.wall is None or len(self.measured) < MIN_FIT_SCALES or n <= self.largest_n:
            return None
        candidates = [TimeProjection(self.wall.predict(n), "global fit", f"global fit {self.wall.describe()}")]
        if (work := self.work_tail) is not None:
            candidates.append(TimeProjection(work.predict(n), "time tail",
                                             f"time tail {fmt.exponent(work.exponent)} ({work.span()})"))
        cpu = self.cpu_tail
        top_work = self._measured_at(self.largest_n, "work_s")
        if cpu is not None and top_work is not None and cpu.hi_n == self.largest_n:
            parallel = min(1.0, top_work / cpu.value)
            candidates.append(TimeProjection(cpu.predict(n) * parallel, "CPU tail",
                                             f"CPU tail {fmt.exponent(cpu.exponent)} ({cpu.span()})"))
        best = candidates[0]
        for other in candidates[1:]:  # a tail must beat the global fit beyond float noise: an exact power law
            if other.value > best.value * (1 + TIE_TOLERANCE):  # keeps its global fit and label
                best = other
        if top_work is not None and best.value < top_work:
            return TimeProjection(top_work, best.source, best.label)
        return best

    def wall_at(self, n: int) -> Estimate:
        """The stage's work time at n (without numba's compile: work_s), measured, fitted, or past the largest
        measured scale the largest of the global fit and the tails (time_projection)."""
        if (value := self._measured_at(n, "work_s")) is not None:
            return Estimate(value, MEASURED)
        if self.wall is None:
            return Estimate(None, UNKNOWN, "one scale measured: no fit")
        projection = self.time_projection(n)
        if projection is not None and projection.from_tail:
            return Estimate(projection.value, EXTRAPOLATED, projection.label, projection.label)
        value = projection.value if projection is not None else self.wall.predict(n)
        return Estimate(value, self.wall.basis(n), self.wall.describe())

    def tail_text(self) -> str | None:
        """The tail exponents of time and CPU beside the global one, and a flag when CPU is super-linear."""
        work, cpu = self.work_tail, self.cpu_tail
        if work is None and cpu is None:
            return None
        span = (work or cpu).span()
        parts = [f"time {fmt.exponent(work.exponent)}" if work else "time —",
                 f"CPU {fmt.exponent(cpu.exponent)}" if cpu else "CPU —"]
        text = f"tail ({span}): {', '.join(parts)}"
        if cpu is not None and cpu.exponent > SUPERLINEAR_CPU:
            text += f"; super-linear CPU ({fmt.exponent(cpu.exponent)})"
        return text

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


def cpu_seconds(records: pd.DataFrame) -> pd.Series:
    """Each record's CPU seconds (user + sys); NaN where neither was recorded."""
    parts = [pd.to_numeric(records[c], errors="coerce") for c in ("cpu_user_s", "cpu_sys_s") if c in records]
    if not parts:
        return pd.Series(np.nan, index=records.index)
    total = parts[0].fillna(0) if len(parts) == 1 else parts[0].fillna(0) + parts[1].fillna(0)
    known = parts[0].notna() if len(parts) == 1 else parts[0].notna() | parts[1].notna()
    return total.where(known)


def _median_per_scale(records: pd.DataFrame) -> pd.DataFrame:
    df = records.copy()
    df["peak_growth_mb"] = df["peak_rss_mb"] - df["rss_start_mb"]
    df["work_s"] = work_seconds(df)
    df["cpu_s"] = cpu_seconds(df)
    for column in ("jit_compile_s", "startup_s", "setup_s"):  # absent from frames of older stores
        df[column] = pd.to_numeric(df[column], errors="coerce") if column in df else np.nan
    cols = ["wall_s", "work_s", "cpu_s", "jit_compile_s", "startup_s", "setup_s", "peak_rss_mb", "rss_start_mb", "peak_growth_mb"]
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
