"""Regression: is a stage's work time or peak memory worse than its history, beyond the noise?

Time is the stage's work time (stage_work_s: wall time without numba's one-time compile and the
first import of numba/umap, which are recorded apart), so a run on a cold JIT cache is not a false
alarm; a record from before that split is compared by its wall time (work time = wall time there).

A benchmark that cries wolf gets ignored, so a change must pass two tests to fail the check:
it is large (ratio to the baseline median above 1 + threshold) and it is beyond the measured
noise: above the max of the last N comparable runs widened by a margin (relative, wider while the
history is short because the max of a few runs understates the spread, and an absolute floor for
timer and allocator jitter on tiny stages), and, once there are RANK_MIN_SAMPLES runs, above the
history's one-sided prediction bound mean + t(1 - ALPHA, n - 1) * sd * sqrt(1 + 1/n) as well.
Only slower/larger is a regression; being faster is never a failure.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass

from kura_perf.checks.baselines import active_pin
from kura_perf.checks.outcome import ERROR, CheckOutcome
from kura_perf.checks.records import HISTORY_RUNS, metric_history, run_metric
from kura_perf.meter import units
from kura_perf.settings.paths import Paths
from kura_perf.store.record import StageRecord

REGRESSION_METRICS = ("stage_work_s", "peak_rss_mb")
NOISE_MARGIN = 0.05  # widen the observed max by 5% with a full history ...
SHORT_HISTORY_EXTRA_MARGIN = 0.20  # ... and more while the history is short: 25% with 1 run, 20%, 15%, 10% with 4
# Below these differences a change is indistinguishable from jitter whatever the ratio says.
ABSOLUTE_FLOOR = {"stage_work_s": 0.05, "wall_s": 0.05, "peak_rss_mb": 32.0}
RANK_MIN_SAMPLES = 5
ALPHA = 0.005  # one-sided. Simulated (gaussian jitter 5%): ~0.5% false alarms per check, 30% slowdowns caught 74-96%
UNITS = {"stage_work_s": "s", "wall_s": "s", "peak_rss_mb": "MB"}
# Recorded in MiB by the meter; compared and shown in decimal MB like every other size (meter/units.py).
MIB_METRICS = ("peak_rss_mb",)


@dataclass
class RegressionResult:
    metric: str
    passed: bool
    value: float | None
    baseline: float | None  # the history's median, or the pinned run's value
    ratio: float | None
    noise_low: float | None
    noise_high: float | None
    samples: int  # history runs used for the noise band
    message: str
    z_score: float | None = None
    pinned_run: str | None = None

    def outcome(self) -> CheckOutcome:
        details = {"z_score": self.z_score, "pinned_run": self.pinned_run}
        return CheckOutcome(f"regression_{self.metric}", self.passed, self.message, ERROR, self.value,
                            self.baseline, self.ratio, self.noise_low, self.noise_high, self.samples,
                            {k: v for k, v in details.items() if v is not None})


def margin_for(samples: int, margin: float = NOISE_MARGIN) -> float:
    """Relative widening of the observed max: NOISE_MARGIN at RANK_MIN_SAMPLES runs or more, up to
    NOISE_MARGIN + SHORT_HISTORY_EXTRA_MARGIN with one run."""
    short = max(0, RANK_MIN_SAMPLES - samples) / (RANK_MIN_SAMPLES - 1)
    return margin + SHORT_HISTORY_EXTRA_MARGIN * min(short, 1.0)


def prediction_bound(history: list[float], alpha: float = ALPHA) -> float:
    """Upper one-sided (1 - alpha) prediction bound for one new run, from the history (n >= 2)."""
    from scipy import stats

    n = len(history)
    mean, sd = statistics.mean(history), statistics.stdev(history)
    return mean + float(stats.t.ppf(1 - alpha, n - 1)) * sd * math.sqrt(1 + 1 / n)


def z_score(value: float, history: list[float]) -> float:
    """(value - mean) / sd of the history; inf when the history is constant and value is above it."""
    mean = statistics.mean(history)
    sd = statistics.stdev(history) if len(history) > 1 else 0.0
    if sd == 0:
        return float("inf") if value > mean else 0.0
    return (value - mean) / sd


def compare(value: float | None, history: list[float], threshold: float = 0.10, *, metric: str = "stage_work_s",
            pinned: float | None = None, pinned_run: str | None = None, margin: float = NOISE_MARGIN,
            floor: float | None = None, alpha: float = ALPHA,
            rank_min_samples: int = RANK_MIN_SAMPLES) -> RegressionResult:
    """Compare `value` with `history` (earlier comparable runs) or a `pinned` baseline value."""
    unit = UNITS.get(metric, "")
    floor = ABSOLUTE_FLOOR.get(metric, 0.0) if floor is None else floor
    n = len(history)
    if value is None:
        return RegressionResult(metric, True, None, None, None, None, None, n, f"{metric}: not measured")
    if pinned is None and n == 0:
        return RegressionResult(metric, True, value, None, None, None, None, 0,
                                f"{metric} {value:.3f} {unit}: no baseline yet (first comparable run)")

    median = statistics.median(history) if n else None
    baseline = pinned if pinned is not None else median
    low, high = (min(history), max(history)) if n else (baseline, baseline)
    if pinned is not None and n and median:  # the history's relative spread, around the pinned value
        low, high = pinned * low / median, pinned * high / median
    widen = margin_for(n, margin)
    noise_low = min(low * (1 - widen), low - floor)
    noise_high = max(high * (1 + widen), high + floor)
    ratio = value / baseline if baseline else float("inf")

    large = ratio > 1 + threshold
    beyond_band = value > noise_high
    z, bound = None, None
    if n >= rank_min_samples:
        z, bound = z_score(value, history), prediction_bound(history, alpha)
        if pinned is not None and median:
            bound *= pinned / median
    beyond_bound = bound is None or value > bound
    regressed = large and beyond_band and beyond_bound

    source = f"pinned run {pinned_run}" if pinned is not None else f"median of {n} runs"
    head = (f"{metric} {value:.3f} {unit} vs {baseline:.3f} {unit} ({source}): x{ratio:.2f}; "
            f"noise band [{noise_low:.3f}, {noise_high:.3f}] from {n} run(s)")
    if bound is not None:
        head += f", prediction bound {bound:.3f} (z {z:.1f})"
    if regressed:
        verdict = f"REGRESSION: over x{1 + threshold:.2f} and beyond the noise"
    elif not large:
        verdict = f"ok: within x{1 + threshold:.2f}"
    elif not beyond_band:
        verdict = "ok: over the threshold but inside the noise band"
    else:
        verdict = "ok: over the threshold but within the history's prediction bound"
    return RegressionResult(metric, not regressed, value, baseline, ratio, noise_low, noise_high, n,
                            f"{head}. {verdict}", z, pinned_run)


def record_metric(record: StageRecord, metric: str) -> float | None:
    """The record's figure; the work time of a record without the compile/start-up split is its wall time."""
    value = getattr(record, metric)
    if value is None and metric == "stage_work_s":
        return record.wall_s
    return value


def check_regression(paths: Paths, record: StageRecord, metric: str, threshold: float = 0.10,
                     history_runs: int = HISTORY_RUNS) -> RegressionResult:
    """The record's `metric` against its pinned baseline for this host, else its rolling history."""

    shown = units.mib_to_mb if metric in MIB_METRICS else float  # memory: the meter's MiB, shown in decimal MB
    history = [shown(v) for v in metric_history(paths, record, metric, limit=history_runs)]
    pin = active_pin(paths, record.profile, record.scale, record.host_fingerprint)
    pinned = None
    if pin and pin != record.run_id:
        pinned = run_metric(paths, pin, record, metric)
        pinned = None if pinned is None else shown(pinned)
    value = record_metric(record, metric)
    result = compare(None if value is None else shown(value), history, threshold, metric=metric, pinned=pinned,
                     pinned_run=pin if pinned is not None else None)
    if pin and pinned is None and pin != record.run_id:
        result.message += f" (pinned run {pin} has no comparable {record.stage} record: rolling history used)"
    return result
