"""The figures the load-testing proposal states (docs/load-testing-proposal.md), named, each with its section.

Measurements are compared against these: the budget checks (kura_perf/checks/budgets.py), the report's
matrix, storage and hardware tables and figures, the simulator's default limits, the sweep's levels and
the scale partitions. They import the figures from here instead of restating them, so a corrected figure
changes everywhere at once; kura_perf_tests/test_proposal.py fails if one is written out again elsewhere.
Only what the proposal says lives here; what kura_perf derives from it (a budget for a scale the proposal
has no row for, a range rescaled to another embedding size) stays with the module that derives it.
Figures the proposal states that nothing compares against (§1.3's scale projections, which are the
per-conversation total times N; §6's time and money budget) are left out.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

# -- §1.1 Embedding Pipeline Scaling ----------------------------------------------------------------

# "Conversation Volume: 100 → 1K → 5K → 10K → 50K → 100K conversations": the scale partitions.
CONVERSATION_VOLUMES = (100, 1_000, 5_000, 10_000, 50_000, 100_000)

# "Concurrent Processing: 1, 5, 10, 20, 50 concurrent embedding batches": the sweep's levels.
CONCURRENCY_LEVELS = (1, 5, 10, 20, 50)

# -- §1.2 Clustering Performance Scaling ------------------------------------------------------------

# The test matrix's "Expected Clusters" per conversation count, (low, high): 1K 10-50, 5K 50-200,
# 10K 100-500, 50K 500-2K. The matrix has these four rows and no others.
EXPECTED_CLUSTERS: dict[int, tuple[int, int]] = {
    1_000: (10, 50),
    5_000: (50, 200),
    10_000: (100, 500),
    50_000: (500, 2_000),
}

# -- §1.3 Storage Scaling Analysis ------------------------------------------------------------------

# KB per conversation per stored component, (low, high): "Raw conversation: ~2-5KB", "Summary: ~1-3KB",
# "Embedding (1536d): ~6KB", "Cluster metadata: ~0.5KB"; keyed by the stage that stores each.
STORAGE_KB_PER_CONVERSATION: dict[str, tuple[float, float]] = {
    "conversations": (2.0, 5.0),
    "summaries": (1.0, 3.0),
    "embeddings": (6.0, 6.0),
    "clusters": (0.5, 0.5),
}
# "Total: ~10-15KB per conversation".
STORAGE_TOTAL_KB_PER_CONVERSATION = (10.0, 15.0)
# The embedding size the 6 KB is for ("Embedding (1536d)": float32, 1536 × 4 bytes).
STORAGE_EMBEDDING_DIMENSION = 1536

# -- §3.2 Computational Requirements ----------------------------------------------------------------


@dataclass(frozen=True)
class HardwareTier:
    """One of §3.2's three machines. `open_ended`: the figures carry the proposal's "+" (64GB+, 16+ cores,
    100GB+); `distributed`: "Consider distributed processing"."""

    name: str
    up_to_conversations: float  # the largest scale the tier is for; the last tier has no upper end
    ram_gb: int
    cores: int
    storage_gb: int
    open_ended: bool = False
    distributed: bool = False


# "Minimum Requirements: RAM 4GB (up to 1K conversations), CPU 2 cores, Storage 1GB"; "Recommended for
# Production: RAM 16GB (up to 10K conversations), CPU 8 cores, Storage 10GB"; "High-Scale Requirements:
# RAM 64GB+ (100K+ conversations), CPU 16+ cores, Storage 100GB+, Consider distributed processing".
HARDWARE_TIERS = (
    HardwareTier("minimum", 1_000, ram_gb=4, cores=2, storage_gb=1),
    HardwareTier("production", 10_000, ram_gb=16, cores=8, storage_gb=10),
    HardwareTier("high-scale", math.inf, ram_gb=64, cores=16, storage_gb=100, open_ended=True, distributed=True),
)


def hardware_tier(conversations: int) -> HardwareTier:
    """The tier for a scale: the first one that goes up to it. The proposal leaves 10K-100K uncovered;
    a scale there (50K) gets the 100K+ machine, the one it outgrows the 10K machine towards."""
    return next(tier for tier in HARDWARE_TIERS if conversations <= tier.up_to_conversations)


# -- §3.3 External Dependencies Limitations ---------------------------------------------------------

# "API Rate Limits: OpenAI Embeddings: 3000 RPM typical; OpenAI Chat Completions: 500 RPM typical".
TYPICAL_EMBEDDINGS_RPM = 3000
TYPICAL_CHAT_RPM = 500
