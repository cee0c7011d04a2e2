"""Fixed budgets from the proposal (kura_perf/proposal.py): memory per scale, storage per conversation,
cluster counts.

They hold whatever the history says (a run can be as fast as ever and still need 20 GB at 10K).
WARN by default; ERROR when the profile sets budgets_blocking.

Cluster counts are judged against the data's own truth when it has one, not against §1.2's guesses:
§1.2's 100-500 clusters at 10K failed a clustering that found the corpus's 48 true topics exactly. With
truth (the finest truth level's class count C, from the record's quality_levels rows):
  - clusters (base level): at least TRUTH_TOLERANCE[0] x C. A base level may be finer than the truth
    by any factor (Kura's k = n/10 is, by design: the meta levels merge upwards), but a base level much
    coarser than the truth has merged true classes, and no level above can split them again.
  - meta_clusters: the topic level (the hierarchy level nearest C) within TRUTH_TOLERANCE x C, i.e.
    0.5x-2x: the hierarchy reaches the truth's granularity somewhere. Inside a factor of 2 the count
    itself says little (ARI and topics_found at that level say how well it matches; quality checks).
Without truth, §1.2's range is shown for information and never fails: it is a guess about data in
general, not a property this data is known to have.
"""

from __future__ import annotations

import math
from pathlib import Path

from kura_perf import proposal
from kura_perf.checks.outcome import ERROR, WARN, CheckOutcome
from kura_perf.files.outputs import stage_bytes
from kura_perf.meter import units
from kura_perf.scales import SCALES
from kura_perf.stages.base import STAGES
from kura_perf.stages.level_quality import finest_rows
from kura_perf.store.record import StageRecord

# With ground truth: the base level at least 0.5x the finest truth's class count; the topic level within 0.5x-2x.
TRUTH_TOLERANCE = (0.5, 2.0)
# §1.3: at most the top of the proposal's ~10-15 KB per conversation, all stages together.
STORAGE_KB_PER_CONVERSATION = proposal.STORAGE_TOTAL_KB_PER_CONVERSATION[1]


def _expected_clusters() -> dict[str, tuple[int, int]]:
    """§1.2's expected base clusters per scale label. The proposal has no row for 100 or 100K; those
    use the nearest row's proportion of the conversation count: 100 as 1K (1%-5% -> 1-5 clusters),
    100K as 50K (1%-4% -> 1,000-4,000)."""
    rows = proposal.EXPECTED_CLUSTERS
    out = {}
    for label, n in SCALES.items():
        row = n if n in rows else min(rows, key=lambda r: abs(math.log(r / n)))
        low, high = rows[row]
        out[label] = (round(low * n / row), round(high * n / row))
    return out


EXPECTED_CLUSTERS = _expected_clusters()


def memory_budget_mb(scale_n: int) -> float:
    """§3.2's RAM for the tier the scale falls in (50K, between the 10K and 100K+ rows, gets 100K+'s), in
    decimal MB. A "4 GB" machine has 4 GiB of RAM (RAM is sold by the GiB): 4,295 MB."""
    return proposal.hardware_tier(scale_n).ram_gb * units.GIB / units.MB


def severity(blocking: bool) -> str:
    return ERROR if blocking else WARN


def check_memory(record: StageRecord, blocking: bool = False) -> CheckOutcome:
    n = record.scale_n or 0
    peak = None if record.peak_rss_mb is None else units.mib_to_mb(record.peak_rss_mb)  # the meter's MiB, in MB
    budget = memory_budget_mb(n)
    if peak is None:
        return CheckOutcome("budget_memory", True, "peak memory not measured (meter off)", severity(blocking),
                            baseline=budget)
    ok = peak <= budget
    return CheckOutcome("budget_memory", ok,
                        f"peak RSS {peak:,.0f} MB {'within' if ok else 'OVER'} the {budget:,.0f} MB budget "
                        f"({proposal.hardware_tier(n).ram_gb:g} GB RAM tier, GiB as sold) "
                        f"for {n} conversations", severity(blocking), peak, budget, peak / budget)


def cumulative_bytes(folder: Path, stage: str) -> int:
    """Bytes stored by this stage and every stage before it, from their manifests."""
    return sum(stage_bytes(folder, s) for s in STAGES[: STAGES.index(stage) + 1])


def check_storage(record: StageRecord, folder: Path, blocking: bool = False) -> CheckOutcome:
    """Stored bytes per conversation so far (this stage and the ones before): the last stage's check is the total."""
    n = record.scale_n or 0
    total = cumulative_bytes(folder, record.stage)
    kb = total / units.KB / n if n else 0.0  # decimal KB, as the proposal's ~50 KB
    ok = kb <= STORAGE_KB_PER_CONVERSATION
    return CheckOutcome("budget_storage", ok,
                        f"{kb:.2f} KB per conversation stored up to {record.stage} ({total} bytes, {n} "
                        f"conversations); budget {STORAGE_KB_PER_CONVERSATION:g} KB", severity(blocking),
                        kb, STORAGE_KB_PER_CONVERSATION, kb / STORAGE_KB_PER_CONVERSATION,
                        details={"bytes_so_far": total})


def _truth_row(levels: list[dict] | None, level: int | None = None) -> dict | None:
    """The finest truth level's row at `level` (None: its topic level), when that truth was scored."""
    rows = [r for r in finest_rows(list(levels or [])) if r.get("true_classes")]
    if level is None:
        rows = [r for r in rows if r.get("is_topic_level")]
    else:
        rows = [r for r in rows if r.get("level") == level]
    return rows[0] if rows else None


def check_cluster_count(record: StageRecord, blocking: bool = False,
                        levels: list[dict] | None = None) -> CheckOutcome:
    """Base (clusters) or topic-level (meta_clusters) cluster count against the truth's class count
    when there is one, else §1.2's range as information (see the module docstring)."""
    row = _truth_row(levels, 0 if record.stage == "clusters" else None)
    if row is not None:
        return _against_truth(record, row, blocking)
    n_clusters, scale = record.n_clusters, record.scale
    low, high = EXPECTED_CLUSTERS.get(scale, (None, None))
    if low is None or n_clusters is None:
        return CheckOutcome("budget_clusters", True, f"no expected cluster count for scale {scale}",
                            severity(blocking), n_clusters)
    inside = "inside" if low <= n_clusters <= high else "outside"
    return CheckOutcome("budget_clusters", True,
                        f"{n_clusters} base clusters, {inside} the proposal's §1.2 guess of {low}-{high} at "
                        f"{scale}; information only: no ground truth to judge the count against",
                        severity(blocking), n_clusters, None, None, low, high)


def _against_truth(record: StageRecord, row: dict, blocking: bool) -> CheckOutcome:
    classes, n, truth = int(row["true_classes"]), int(row["n_clusters"]), row.get("truth_level") or "topic"
    low_factor, high_factor = TRUTH_TOLERANCE
    low = low_factor * classes
    if record.stage == "clusters":
        high, what = None, "base clusters"
        ok = n >= low
        rule = f"at least {low_factor:g}x the {classes} true classes of '{truth}' ({low:g})"
    else:
        high, what = high_factor * classes, f"clusters at the topic level (level {row['level']})"
        ok = low <= n <= high
        rule = f"{low_factor:g}x-{high_factor:g}x the {classes} true classes of '{truth}' ({low:g}-{high:g})"
    verdict = "" if ok else ": OUTSIDE"
    return CheckOutcome("budget_clusters", ok, f"{n} {what}; expected {rule} (ground truth, not §1.2){verdict}",
                        severity(blocking), n, classes, n / classes if classes else None, low, high,
                        details={"truth_level": truth})


def check_budgets(record: StageRecord, folder: Path, blocking: bool = False,
                  levels: list[dict] | None = None) -> list[CheckOutcome]:
    """levels: the record's quality_levels rows (the truth's class counts come from them)."""
    outcomes = [check_memory(record, blocking), check_storage(record, folder, blocking)]
    if record.stage == "clusters" or (record.stage == "meta_clusters" and _truth_row(levels) is not None):
        outcomes.append(check_cluster_count(record, blocking, levels))
    return outcomes
