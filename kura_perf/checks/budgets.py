"""Fixed budgets from the proposal (kura_perf/proposal.py): memory per scale, storage per conversation,
cluster counts.

They hold whatever the history says (a run can be as fast as ever and still need 20 GB at 10K).
WARN by default; ERROR when the profile sets budgets_blocking.
"""

from __future__ import annotations

import math
from pathlib import Path

from kura_perf import proposal
from kura_perf.checks.outcome import ERROR, WARN, CheckOutcome
from kura_perf.outputs import stage_bytes
from kura_perf.scales import SCALES
from kura_perf.stages.base import STAGES
from kura_perf.store.record import StageRecord

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
    """§3.2's RAM for the tier the scale falls in (50K, between the 10K and 100K+ rows, gets 100K+'s)."""
    return proposal.hardware_tier(scale_n).ram_gb * 1024.0


def severity(blocking: bool) -> str:
    return ERROR if blocking else WARN


def check_memory(record: StageRecord, blocking: bool = False) -> CheckOutcome:
    peak, n = record.peak_rss_mb, record.scale_n or 0
    budget = memory_budget_mb(n)
    if peak is None:
        return CheckOutcome("budget_memory", True, "peak memory not measured (meter off)", severity(blocking),
                            baseline=budget)
    ok = peak <= budget
    return CheckOutcome("budget_memory", ok,
                        f"peak RSS {peak:.0f} MB {'within' if ok else 'OVER'} the {budget / 1024:.0f} GB budget "
                        f"for {n} conversations", severity(blocking), peak, budget, peak / budget)


def cumulative_bytes(folder: Path, stage: str) -> int:
    """Bytes stored by this stage and every stage before it, from their manifests."""
    return sum(stage_bytes(folder, s) for s in STAGES[: STAGES.index(stage) + 1])


def check_storage(record: StageRecord, folder: Path, blocking: bool = False) -> CheckOutcome:
    """Stored bytes per conversation so far (this stage and the ones before): the last stage's check is the total."""
    n = record.scale_n or 0
    total = cumulative_bytes(folder, record.stage)
    kb = total / 1024.0 / n if n else 0.0
    ok = kb <= STORAGE_KB_PER_CONVERSATION
    return CheckOutcome("budget_storage", ok,
                        f"{kb:.2f} KB per conversation stored up to {record.stage} ({total} bytes, {n} "
                        f"conversations); budget {STORAGE_KB_PER_CONVERSATION:g} KB", severity(blocking),
                        kb, STORAGE_KB_PER_CONVERSATION, kb / STORAGE_KB_PER_CONVERSATION,
                        details={"bytes_so_far": total})


def check_cluster_count(record: StageRecord, blocking: bool = False) -> CheckOutcome:
    n_clusters, scale = record.n_clusters, record.scale
    low, high = EXPECTED_CLUSTERS.get(scale, (None, None))
    if low is None or n_clusters is None:
        return CheckOutcome("budget_clusters", True, f"no expected cluster count for scale {scale}",
                            severity(blocking), n_clusters)
    ok = low <= n_clusters <= high
    return CheckOutcome("budget_clusters", ok,
                        f"{n_clusters} base clusters; expected {low}-{high} at {scale} (proposal §1.2)",
                        severity(blocking), n_clusters, None, None, low, high)


def check_budgets(record: StageRecord, folder: Path, blocking: bool = False) -> list[CheckOutcome]:
    outcomes = [check_memory(record, blocking), check_storage(record, folder, blocking)]
    if record.stage == "clusters":
        outcomes.append(check_cluster_count(record, blocking))
    return outcomes
