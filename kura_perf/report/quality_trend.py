"""Clustering quality across scales, and when it collapses.

A pipeline that gets faster to run but clusters badly at a larger scale is not a pipeline to recommend
there, so quality stands beside time and memory on the report's first screen, and a drop is called out
in words. The figure per partition is the topic-level ARI on the finest truth level (the ★ row of the
quality section), with its noise share; a profile without ground truth has its silhouette instead.

What counts as a collapse (one rule for the report, the guidance and the advisor): at a larger scale the
ARI is more than COLLAPSE_ABSOLUTE (0.10) below the best ARI measured at any smaller scale of the same
profile, or below it by more than COLLAPSE_RELATIVE (a quarter) of that best. Both are on the measured
figures only; nothing here is extrapolated. Any smaller scale, not only the next one, so a slide in
small steps (0.90 → 0.84 → 0.78) is still seen.
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from kura_perf.report import fmt

COLLAPSE_ABSOLUTE = 0.10
COLLAPSE_RELATIVE = 0.25


@dataclass(frozen=True)
class QualityPoint:
    """One partition's quality: ARI (topic level, finest truth) and noise share, or silhouette alone."""
    n: int
    ari: float | None = None
    noise: float | None = None
    silhouette: float | None = None
    truth: str | None = None  # the truth level the ARI is against (e.g. 'topic', 'intent')

    def text(self) -> str:
        """'ARI 0.968 (intent) · noise 19%' / 'silhouette 0.21 (no truth)' / '—'."""
        if self.ari is not None:
            out = f"ARI {self.ari:.3f}" + (f" ({self.truth})" if self.truth else "")
            return out + (f" · noise {fmt.percent(self.noise)}" if self.noise is not None else "")
        if self.silhouette is not None:
            out = f"silhouette {self.silhouette:.3f} (no truth)"
            return out + (f" · noise {fmt.percent(self.noise)}" if self.noise is not None else "")
        return fmt.MISSING


@dataclass(frozen=True)
class Collapse:
    profile: str
    from_n: int
    from_ari: float
    to_n: int
    to_ari: float
    to_noise: float | None = None
    from_noise: float | None = None

    def sentence(self) -> str:
        noise = ""
        if self.to_noise is not None:
            before = f" (was {fmt.percent(self.from_noise)})" if self.from_noise is not None else ""
            noise = f", with {fmt.percent(self.to_noise)} of conversations left as noise{before}"
        return (f"Quality collapses for profile {self.profile}: ARI falls from {self.from_ari:.3f} at "
                f"{fmt.conversations(self.from_n)} to {self.to_ari:.3f} at {fmt.conversations(self.to_n)}{noise} "
                f"(measured; a drop of more than {COLLAPSE_ABSOLUTE:g} or a quarter counts as a collapse). "
                f"The clusters at {fmt.conversations(self.to_n)} cannot be trusted with this profile, however "
                "fast it runs there.")


def _num(value) -> float | None:
    return None if fmt.is_missing(value) else float(value)


def is_collapse(best: float, now: float) -> bool:
    drop = best - now
    return drop > COLLAPSE_ABSOLUTE or (best > 0 and drop > COLLAPSE_RELATIVE * best)


def collapses(profile: str, points: list[QualityPoint]) -> list[Collapse]:
    """Every scale whose ARI collapsed against a smaller scale (measured points only). It is judged
    against the best smaller scale; the sentence names the nearest smaller scale it collapsed from (10K
    → 100K rather than 1K → 100K when both were good), which is where to look for the cause."""
    out, seen = [], []
    for p in sorted(points, key=lambda p: p.n):
        if p.ari is None:
            continue
        fallen_from = [q for q in seen if is_collapse(q.ari, p.ari)]
        if fallen_from:
            q = fallen_from[-1]  # the nearest smaller scale it collapsed from
            out.append(Collapse(profile, q.n, q.ari, p.n, p.ari, p.noise, q.noise))
        seen.append(p)
    return out


def points_from_levels(levels: pd.DataFrame, profile: str) -> dict[int, QualityPoint]:
    """Scale -> quality from the quality_by_level view (latest run per partition): the topic level's
    row on the finest truth level; without truth, the base level's silhouette."""
    if levels is None or levels.empty or "profile" not in levels:
        return {}
    rows = levels[levels["profile"] == profile]
    out: dict[int, QualityPoint] = {}
    for n, at in rows.groupby("scale_n"):
        if "finest_truth" in at and at["finest_truth"].notna().any():
            at = at[at["finest_truth"].fillna(False).astype(bool)]
        topic = at[at["is_topic_level"].fillna(False).astype(bool)] if "is_topic_level" in at else at.iloc[0:0]
        base = at[at["level"] == 0] if "level" in at else at
        row = (topic if len(topic) else base if len(base) else at).iloc[0]
        truth = row.get("truth_level") if "truth_level" in at else None
        out[int(n)] = QualityPoint(int(n), _num(row.get("ari")), _num(row.get("noise_share")),
                                   _num(row.get("silhouette")), None if fmt.is_missing(truth) else str(truth))
    return out


def points_from_runs(ok: pd.DataFrame) -> dict[int, QualityPoint]:
    """Scale -> quality from successful clusters records (latest at each scale): for stores without
    per-level rows."""
    rows = ok[ok["stage"] == "clusters"] if "stage" in ok else ok.iloc[0:0]
    if "finished_at" in rows:
        rows = rows.sort_values("finished_at")
    out: dict[int, QualityPoint] = {}
    for n, at in rows.groupby("scale_n"):
        row = at.iloc[-1]
        out[int(n)] = QualityPoint(int(n), _num(row.get("ari")), _num(row.get("noise_share")),
                                   _num(row.get("silhouette")))
    return out


def quality_points(levels: pd.DataFrame, ok: pd.DataFrame, profile: str) -> dict[int, QualityPoint]:
    """Per-level rows where recorded, else the clusters records; one point per measured scale."""
    from_runs = points_from_runs(ok[ok["profile"] == profile] if "profile" in ok else ok)
    return {**from_runs, **points_from_levels(levels, profile)}
