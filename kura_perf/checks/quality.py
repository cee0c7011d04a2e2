"""Clustering quality against the profile's floors: a faster pipeline that clusters badly is no win.

Each floor holds at a named hierarchy level (quality_levels.py): min_silhouette at level 0 (the base
clusters, on the clusters stage); min_ari at the topic level, the level whose cluster count is nearest
the true topic count (on the meta_clusters stage, which knows every level). With several truth levels
(profile truth_levels) min_ari holds for the finest; the coarser ones' topic-level ARI is reported. Kura's k = n/10 base
clusters are finer than the topics by design, so their ARI is reported, with homogeneity (is each
cluster one topic?), but not held to min_ari. Scores come from fixed seeded samples, so they are
comparable run to run. A floor the profile does not set is reported, not enforced.
"""

from __future__ import annotations

from kura_perf.checks.outcome import WARN, CheckOutcome
from kura_perf.profiles import Profile
from kura_perf.stages.level_quality import finest_rows
from kura_perf.store.record import StageRecord


def _floor(name: str, value: float | None, floor: float | None, severity: str, where: str,
           enforced: bool = True) -> CheckOutcome:
    shown = "n/a" if value is None else f"{value:.3f}"
    if floor is None or not enforced:
        why = "the profile sets no minimum" if floor is None else f"min_{name} holds at the topic level"
        return CheckOutcome(f"quality_{name}", True, f"{name} {shown} {where}; {why}", severity, value)
    if value is None:
        return CheckOutcome(f"quality_{name}", False, f"{name} not available {where} (fewer than 2 clusters, or "
                                                      f"no ground truth) but the profile requires >= {floor}",
                            severity, None, floor)
    ok = value >= floor
    return CheckOutcome(f"quality_{name}", ok, f"{name} {value:.3f} {where} {'>=' if ok else '<'} minimum {floor}",
                        severity, value, floor, value / floor if floor else None)


def _where(level: dict | None) -> str:
    if level is None:
        return "at level 0 (base clusters)"
    what = "base clusters" if level["level"] == 0 else "meta clusters"
    classes = level.get("true_classes") or level.get("true_topics")
    truth = level.get("truth_level") or "topic"
    named = "topics" if truth == "topic" else f"classes of '{truth}'"
    topics = f", nearest the {classes} true {named}" if classes else ""
    return f"at level {level['level']} ({level['n_clusters']} {what}{topics})"


def topic_level(levels: list[dict]) -> dict | None:
    """The finest truth level's row marked is_topic_level, else (no ground truth) the base level, else None."""
    finest = finest_rows(levels)
    marked = [row for row in finest if row.get("is_topic_level")]
    if marked:
        return marked[0]
    base = [row for row in finest if row.get("level") == 0]
    return base[0] if base else None


def coarser_topic_levels(levels: list[dict]) -> list[dict]:
    """The topic-level rows of the truth levels coarser than the finest (reported, never enforced)."""
    finest = {id(row) for row in finest_rows(levels)}
    return [row for row in levels if id(row) not in finest and row.get("is_topic_level")]


def check_quality(record: StageRecord, profile: Profile, severity: str = WARN,
                  levels: list[dict] | None = None) -> list[CheckOutcome]:
    """Outcomes for a clusters record (level 0) or a meta_clusters record (`levels`: its level rows)."""
    if record.stage == "meta_clusters":
        level = topic_level(levels or [])
        if level is None:
            return [CheckOutcome("quality_ari", profile.min_ari is None, "no per-level quality recorded for this "
                                 "hierarchy" + ("" if profile.min_ari is None else
                                                f" but the profile requires ari >= {profile.min_ari}"), severity)]
        outcomes = [_floor("ari", level.get("ari"), profile.min_ari, severity, _where(level))]
        outcomes.append(_floor("nmi", level.get("nmi"), None, severity, _where(level)))
        for coarse in coarser_topic_levels(levels or []):  # e.g. CLINC150's domains over its intents
            truth = coarse.get("truth_level")
            outcome = _floor("ari", coarse.get("ari"), None, severity, _where(coarse))
            outcome.name = f"quality_ari_{truth}"
            outcomes.append(outcome)
        return outcomes
    base = next((row for row in finest_rows(levels or []) if row.get("level") == 0), None)
    where = _where(base)
    outcomes = [_floor("silhouette", record.silhouette, profile.min_silhouette, severity, where)]
    if profile.min_ari is not None or record.ari is not None:
        outcomes.append(_floor("ari", record.ari, profile.min_ari, severity, where, enforced=False))
    if base is not None and base.get("homogeneity") is not None:
        outcomes.append(_floor("homogeneity", base["homogeneity"], None, severity, where))
    return outcomes
