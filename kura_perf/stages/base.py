"""What every backend's stage takes and returns, so the runner, meter and checks treat them alike."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

from kura_perf.files.outputs import StageData
from kura_perf.meter.api import ApiCounters

STAGES = ("conversations", "summaries", "embeddings", "clusters", "meta_clusters", "projections")

# What each stage reads from earlier stages' stored outputs.
UPSTREAM: dict[str, tuple[str, ...]] = {
    "conversations": (),
    "summaries": ("conversations",),
    "embeddings": ("summaries",),
    "clusters": ("conversations", "summaries", "embeddings"),
    "meta_clusters": ("clusters",),
    "projections": ("embeddings", "clusters"),
}

Progress = Callable[[int, int], None]


@dataclass
class StageInputs:
    scale_n: int  # conversations to process: the partition's, or one batch's when streamed
    upstream: dict[str, StageData]
    progress: Progress | None = None
    offset: int = 0  # index of the first conversation in this call (a streamed batch's start)


@dataclass
class StageResult:
    data: StageData
    items_in: int
    items_out: int
    skipped: int = 0
    quality: dict = field(default_factory=dict)
    api: ApiCounters | None = None
    extra: dict = field(default_factory=dict)
    # The embedding model alone on a sample of the same texts, timed just before the stage (embeddings).
    model_items_per_s: float | None = None
    model_sample_n: int | None = None
    quality_levels: list[dict] = field(default_factory=list)  # filled by the runner (quality_levels.py)
    jit_compiled: bool | None = None  # filled by the runner: did numba compile during the stage (jit_cache.py)
    jit_compile_s: float | None = None  # filled by the runner: seconds of the wall spent in numba's compiler
    startup_s: float | None = None  # filled by the runner: seconds of the wall importing numba/umap (per process)
    setup_s: float | None = None  # filled by the runner: the backend's prepare (model loads), outside the wall
