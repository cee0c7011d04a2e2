"""Quality regression: has the topic-level score fallen below its history, beyond the noise?

A faster pipeline that clusters worse is no win, and a floor (min_ari) catches only a fall below a
fixed line. This compares the clusters or meta_clusters record's topic-level score with the history of
the same stage, scale, profile (hash) and host, with the regression module's noise-aware verdict
(regression.compare: large AND beyond the observed spread AND, with enough runs, beyond the prediction
bound), so a quality drop fails exactly like a slowdown does, with no second detector.

The score: ARI at the topic level of the finest truth level (the level nearest its class count);
without ground truth, the base level's silhouette. regression.compare judges "higher is worse", so it
gets each score's shortfall from a perfect 1 (1 - ARI, 1 - silhouette): a fall in the score is a rise in
the shortfall, and the profile's regression_threshold applies to the shortfall's ratio (ARI 0.90 ->
0.85 is a shortfall x1.5). QUALITY_FLOOR is the absolute jitter below which no change counts, as
regression.ABSOLUTE_FLOOR is for timings.
"""

from __future__ import annotations

from kura_perf.checks.baselines import active_pin
from kura_perf.checks.outcome import ERROR, CheckOutcome
from kura_perf.checks.records import HISTORY_RUNS, _timestamp, record_levels
from kura_perf.checks.regression import compare
from kura_perf.settings.paths import Paths
from kura_perf.stages.level_quality import finest_rows
from kura_perf.store import query
from kura_perf.store.record import StageRecord

QUALITY_REGRESSION_STAGES = ("clusters", "meta_clusters")
QUALITY_FLOOR = 0.02  # ARI / silhouette points: UMAP and HDBSCAN seeds move ARI by ~0.01-0.02 (profiles.toml)


def topic_score(levels: list[dict]) -> tuple[str, str | None, float | None]:
    """(metric, truth level, value): the finest truth level's topic-level ARI when scored, else the base
    level's silhouette (no ground truth), else (ari, None, None)."""
    finest = finest_rows(levels)
    topic = next((r for r in finest if r.get("is_topic_level") and r.get("ari") is not None), None)
    if topic is not None:
        return "ari", topic.get("truth_level") or "topic", float(topic["ari"])
    base = next((r for r in levels if r.get("level") == 0 and r.get("silhouette") is not None), None)
    if base is not None:
        return "silhouette", None, float(base["silhouette"])
    return "ari", None, None


_WHERE = """stage = ? AND scale = ? AND profile_hash IS NOT DISTINCT FROM ?
            AND host_fingerprint IS NOT DISTINCT FROM ?"""


def _history_sql(metric: str, truth_level: str | None, limit: int, run_filter: str) -> str:
    if metric == "ari":
        return f"""SELECT ari AS v FROM quality_levels
                   WHERE {_WHERE} AND {run_filter} AND is_topic_level AND truth_level = ? AND ari IS NOT NULL
                   ORDER BY finished_at DESC LIMIT {int(limit)}"""
    return f"""SELECT any_value(silhouette) AS v FROM quality_levels
               WHERE {_WHERE} AND {run_filter} AND level = 0 AND silhouette IS NOT NULL
               GROUP BY record_id ORDER BY max(finished_at) DESC LIMIT {int(limit)}"""


def score_history(paths: Paths, record: StageRecord, metric: str, truth_level: str | None,
                  limit: int = HISTORY_RUNS) -> list[float]:
    """The topic-level `metric` of the last `limit` earlier records of the same stage, scale, profile
    hash and host (quality_levels rows; a record has them only when its stage succeeded), newest first."""

    params = [record.stage, record.scale, record.profile_hash, record.host_fingerprint, record.run_id,
              _timestamp(record.finished_at)]
    if metric == "ari":
        params.append(truth_level)
    rows = query(paths.metrics, _history_sql(metric, truth_level, limit, "run_id <> ? AND finished_at < ?"), params)
    return [float(v) for v in rows["v"].tolist()]


def pinned_score(paths: Paths, pin: str, record: StageRecord, metric: str, truth_level: str | None) -> float | None:
    params = [record.stage, record.scale, record.profile_hash, record.host_fingerprint, pin]
    if metric == "ari":
        params.append(truth_level)
    rows = query(paths.metrics, _history_sql(metric, truth_level, 1, "run_id = ?"), params)
    return float(rows["v"].iloc[0]) if len(rows) else None


def check_quality_regression(paths: Paths, record: StageRecord, threshold: float = 0.10,
                             levels: list[dict] | None = None,
                             history_runs: int = HISTORY_RUNS) -> CheckOutcome:
    """regression_ari (or regression_silhouette without truth) for a clusters or meta_clusters record."""
    levels = record_levels(paths, record) if levels is None else levels
    metric, truth_level, value = topic_score(levels)
    name = f"regression_{metric}"
    where = f"topic-level {metric.upper() if metric == 'ari' else metric}" + \
        (f" (truth '{truth_level}')" if truth_level else " (base level, no ground truth)")
    if value is None:
        return CheckOutcome(name, True, f"{where}: not measured (no per-level quality for this record)", ERROR)
    history = score_history(paths, record, metric, truth_level, history_runs)
    pin = active_pin(paths, record.profile, record.scale, record.host_fingerprint)
    pinned = pinned_score(paths, pin, record, metric, truth_level) if pin and pin != record.run_id else None
    result = compare(1.0 - value, [1.0 - h for h in history], threshold, metric=f"{metric}_shortfall",
                     pinned=None if pinned is None else 1.0 - pinned, pinned_run=pin if pinned is not None else None,
                     floor=QUALITY_FLOOR)
    if result.baseline is None:
        return CheckOutcome(name, True, f"{where} {value:.3f}: no baseline yet (first comparable run)", ERROR,
                            value, samples=0)
    baseline = 1.0 - result.baseline
    verdict = result.message.rsplit(". ", 1)[-1]  # regression.compare's own verdict, on the shortfall
    source = f"pinned run {pin}" if pinned is not None else f"median of {len(history)} runs"
    low, high = 1.0 - result.noise_high, 1.0 - result.noise_low
    message = (f"{where} {value:.3f} vs {baseline:.3f} ({source}); noise band [{low:.3f}, {high:.3f}] from "
               f"{result.samples} run(s); shortfall from 1 x{result.ratio:.2f}. {verdict}")
    details = {"truth_level": truth_level, "shortfall_ratio": result.ratio, "z_score": result.z_score,
               "pinned_run": result.pinned_run}
    return CheckOutcome(name, result.passed, message, ERROR, value, baseline,
                        value / baseline if baseline else None, low, high, result.samples,
                        {k: v for k, v in details.items() if v is not None})
