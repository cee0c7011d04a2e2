"""Clustering quality against the profile's floors: a faster pipeline that clusters badly is no win.

The scores come from the clusters stage's record (computed on a fixed seeded sample, so they are
comparable run to run). A floor the profile does not set is reported, not enforced.
"""

from __future__ import annotations

from kura_perf.checks.outcome import WARN, CheckOutcome
from kura_perf.profiles import Profile


def _floor(name: str, value: float | None, floor: float | None, severity: str) -> CheckOutcome:
    if floor is None:
        shown = "n/a" if value is None else f"{value:.3f}"
        return CheckOutcome(f"quality_{name}", True, f"{name} {shown}; the profile sets no minimum", severity, value)
    if value is None:
        return CheckOutcome(f"quality_{name}", False, f"{name} not available (fewer than 2 clusters, or no ground "
                                                      f"truth) but the profile requires >= {floor}", severity,
                            None, floor)
    ok = value >= floor
    return CheckOutcome(f"quality_{name}", ok, f"{name} {value:.3f} {'>=' if ok else '<'} minimum {floor}",
                        severity, value, floor, value / floor if floor else None)


def check_quality(record: dict, profile: Profile, severity: str = WARN) -> list[CheckOutcome]:
    outcomes = [_floor("silhouette", record.get("silhouette"), profile.min_silhouette, severity)]
    if profile.min_ari is not None or record.get("ari") is not None:
        outcomes.append(_floor("ari", record.get("ari"), profile.min_ari, severity))
    return outcomes
