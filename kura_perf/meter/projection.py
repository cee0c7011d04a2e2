"""How long a stage that did not finish would have taken: pure arithmetic, no I/O.

A stage stopped at a time limit, or killed, leaves its progress (items done of items total, and when
it counted them). For stages whose work is linear in items (each conversation summarised or embedded
once, in batches of the same size) the remaining items at the observed rate give an honest projection;
for the others (clustering, the meta-cluster loop, UMAP: super-linear, iterative) there is none, and
the record says so with projection_kind NULL rather than a made-up figure.
"""

from __future__ import annotations

from dataclasses import dataclass

LINEAR_IN_ITEMS = "linear-in-items"
# Stages whose cost grows linearly with the items they process, in the order they process them.
LINEAR_STAGES = frozenset({"conversations", "summaries", "embeddings"})


@dataclass(frozen=True)
class Progress:
    """What a progress log saw: items done of total; `first_*` / `last_*` are the first and last
    reports, as seconds since the stage started (wall clock of the stage, not of the progress log)."""

    done: int
    total: int
    first_done: int
    first_s: float
    last_s: float


@dataclass(frozen=True)
class Projection:
    items_done: int | None
    items_total: int | None
    rate_items_per_s: float | None
    elapsed_s: float | None
    projected_wall_s: float | None
    projection_kind: str | None

    def as_record(self) -> dict:
        return {"items_done": self.items_done, "items_total": self.items_total,
                "rate_items_per_s": self.rate_items_per_s, "elapsed_s": self.elapsed_s,
                "projected_wall_s": self.projected_wall_s, "projection_kind": self.projection_kind}


NO_PROGRESS = Projection(None, None, None, None, None, None)


def rate(progress: Progress) -> float | None:
    """Items per second between the first and last report (so model loading and reading inputs before
    the first batch do not count as processing), else since the stage started."""
    span = progress.last_s - progress.first_s
    if span > 0 and progress.done > progress.first_done:
        return (progress.done - progress.first_done) / span
    if progress.last_s > 0 and progress.done > 0:
        return progress.done / progress.last_s
    return None


def project(stage: str, progress: Progress | None, elapsed_s: float, finished: bool = False) -> Projection:
    """The record's progress figures for a stage that ran `elapsed_s` seconds. A projected total wall
    time only for a stage linear in items that stopped part-way with a measurable rate."""
    if progress is None:
        return Projection(None, None, None, elapsed_s, None, None)
    r = rate(progress)
    partial = not finished and 0 < progress.done < progress.total
    if not partial or r is None or stage not in LINEAR_STAGES:
        return Projection(progress.done, progress.total, r, elapsed_s, None, None)
    # Time at the last report, plus the remaining items at the observed rate. Time spent after the
    # last report is already part of elapsed_s and is not counted twice.
    projected = max(elapsed_s, progress.last_s + (progress.total - progress.done) / r)
    return Projection(progress.done, progress.total, r, elapsed_s, projected, LINEAR_IN_ITEMS)
