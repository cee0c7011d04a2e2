"""Choosing HDBSCAN's min_cluster_size from the data, not from an assumed topic size.

A fixed size assumes how big topics are: 100 suits 48 topics of ~200 conversations each (synthetic
10K: ARI 0.957) and wrecks 150 intents of ~67 each (CLINC150 10K: 40 clusters, ARI 0.22), while 40 does
the reverse (CLINC150: ARI 0.54; synthetic: 94 clusters, ARI 0.77). A size that grows with n (the
previous rule, 1% of n) caps the number of clusters at ~100 whatever the data.

So the size is chosen per run: HDBSCAN's tree depends on min_samples only, so it is built once, and
every candidate size on a geometric grid is read off it (condense, select): cheap even at 100K. Each
candidate's clustering is scored by HDBSCAN's relative validity (a fast DBCV: density separation
between clusters against density sparseness within them, weighted by cluster size over all points,
so noise lowers it); the finest size within a small tolerance of the best wins. On the reduced (UMAP)
space the criterion peaks where ARI does on both corpora we measured (synthetic 10K: size 100;
CLINC150 10K: 40). At 100K the UMAP space breaks topics into many dense pieces (synthetic: ~1,700
clusters): the base level is then fine, and the topics are recovered one hierarchy level up, where
the meta-clustering merges pieces by their members' mean vectors (ARI 0.94 at the 53-cluster level).
Figures: docs/reference-quality.md.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from kura_perf.errors import KuraPerfError

VALIDITY_TOLERANCE = 0.02  # relative validity is in [-1, 1]; see choose_cluster_size


@dataclass
class SizeChoice:
    """The chosen size, its labels, and every candidate's score (kept in the stage record)."""

    size: int
    labels: np.ndarray
    candidates: list[dict] = field(default_factory=list)  # {"size", "clusters", "noise_share", "validity"}


def candidate_sizes(n_points: int, floor: int, step: float, max_share: float) -> list[int]:
    """floor, floor*step, ... (rounded, distinct) up to max_share of the points (at least the floor)."""
    if floor < 2:
        raise KuraPerfError(f"min_cluster_size must be at least 2 (got {floor})")
    if step <= 1.0:
        raise KuraPerfError(f"size_step must be above 1 (got {step})")
    ceiling = max(floor, math.floor(n_points * max_share))
    sizes, size = [], float(floor)
    while round(size) <= ceiling:
        if not sizes or round(size) != sizes[-1]:
            sizes.append(int(round(size)))
        size *= step
    return sizes


def choose_cluster_size(points: np.ndarray, floor: int, min_samples: int, step: float = 1.5,
                        max_share: float = 0.1, selection_method: str = "eom",
                        tolerance: float = VALIDITY_TOLERANCE) -> SizeChoice:
    """Fit HDBSCAN's tree once on `points`, score each candidate size's clustering, and keep the
    smallest size whose validity is within `tolerance` of the best.

    Near-ties go to the finer clustering because the hierarchy above can merge clusters that are too
    fine but never split ones that are too coarse: on the synthetic 1K corpus (48 topics of ~21) the
    curve is flat from size 10 (49 clusters, 0.572) to 19 (29 clusters, merged topics, 0.580).
    """
    import hdbscan
    from hdbscan.hdbscan_ import _tree_to_labels

    points = np.asarray(points, dtype=np.float64)
    n = len(points)
    sizes = [s for s in candidate_sizes(n, floor, step, max_share) if s < n]
    if not sizes:
        return SizeChoice(size=floor, labels=np.full(n, -1, dtype=np.int64))
    fitted = hdbscan.HDBSCAN(min_cluster_size=sizes[0], min_samples=min(min_samples, n - 1),
                             cluster_selection_method=selection_method, gen_min_span_tree=True).fit(points)
    scorer = hdbscan.HDBSCAN(gen_min_span_tree=True)
    scorer._min_spanning_tree = fitted._min_spanning_tree
    candidates, labels_by_size = [], {}
    for size in sizes:
        labels = _tree_to_labels(None, fitted._single_linkage_tree, min_cluster_size=size,
                                 cluster_selection_method=selection_method)[0].astype(np.int64)
        clusters = int(labels.max()) + 1 if len(labels) else 0
        validity = _validity(scorer, labels) if clusters >= 2 else -1.0
        candidates.append({"size": size, "clusters": clusters, "noise_share": round(float(np.mean(labels < 0)), 4),
                           "validity": round(validity, 4)})
        labels_by_size[size] = labels
    best = max(c["validity"] for c in candidates)
    chosen = min(c["size"] for c in candidates if c["validity"] >= best - tolerance)
    return SizeChoice(size=chosen, labels=labels_by_size[chosen], candidates=candidates)


def _validity(scorer, labels: np.ndarray) -> float:
    """hdbscan's relative_validity_ for `labels` over the fitted minimum spanning tree."""
    scorer.labels_ = labels
    scorer._relative_validity = None
    return float(scorer.relative_validity_)
