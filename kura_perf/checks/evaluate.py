"""Run every check that applies to one stage record and store the outcomes.

Grouped the way Dagster shows them (one asset check per group): regression (on clusters and
meta_clusters also the topic-level quality's regression), budgets (cluster counts against the ground
truth when there is one), sanity and, on clusters and meta_clusters, quality. Each group is a list
of outcomes, one check_results row each.
"""

from __future__ import annotations

from pathlib import Path

from kura_perf.checks.budgets import check_budgets
from kura_perf.checks.outcome import ERROR, CheckOutcome, write_outcomes
from kura_perf.checks.quality import check_quality
from kura_perf.checks.quality_regression import QUALITY_REGRESSION_STAGES, check_quality_regression
from kura_perf.checks.records import record_levels
from kura_perf.checks.regression import REGRESSION_METRICS, check_regression
from kura_perf.checks.sanity import check_sanity
from kura_perf.profiles import Profile
from kura_perf.settings.paths import Paths
from kura_perf.store.record import StageRecord

CHECK_GROUPS = ("regression", "budgets", "sanity", "quality")


QUALITY_STAGES = ("clusters", "meta_clusters")


def groups_for(stage: str) -> tuple[str, ...]:
    return CHECK_GROUPS if stage in QUALITY_STAGES else CHECK_GROUPS[:3]


def evaluate_group(group: str, paths: Paths, record: StageRecord, profile: Profile,
                   folder: Path | None = None) -> list[CheckOutcome]:
    """folder: where the stage's output is (a pipeline shape's own folder); default the partition's."""
    folder = folder or paths.partition_dir(record.profile, record.scale)
    if group == "regression":
        outcomes = [check_regression(paths, record, m, profile.regression_threshold).outcome()
                    for m in REGRESSION_METRICS]
        if record.stage in QUALITY_REGRESSION_STAGES and record.status in (None, "success"):
            outcomes.append(check_quality_regression(paths, record, profile.regression_threshold))
        return outcomes
    if group == "budgets":
        levels = record_levels(paths, record) if record.stage in QUALITY_STAGES else None
        return check_budgets(record, folder, blocking=profile.budgets_blocking, levels=levels)
    if group == "sanity":
        return [check_sanity(folder, record.stage, profile, record.scale_n or 0)]
    if group == "quality":
        return check_quality(record, profile, severity=ERROR, levels=record_levels(paths, record))
    raise ValueError(f"unknown check group {group}")


def evaluate_stage(paths: Paths, record: StageRecord, profile: Profile, groups: tuple[str, ...] | None = None,
                   store: bool = True, folder: Path | None = None) -> dict[str, list[CheckOutcome]]:
    """{group: outcomes} for the record's stage; with store=True also appended to check_results."""
    results = {g: evaluate_group(g, paths, record, profile, folder)
               for g in (groups or groups_for(record.stage))}
    if store:
        write_outcomes(paths.metrics, record, [o for outcomes in results.values() for o in outcomes])
    return results
