"""Clustering quality: internal (silhouette, Davies-Bouldin) and, when ground truth exists, external scores.

Silhouette is O(n^2), so above `sample_size` it runs on a seeded sample: the score stays comparable
run to run while costing the same at 100k as at 5k.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

QUALITY_KEYS = ("silhouette", "davies_bouldin", "n_clusters", "noise_share", "ari", "nmi", "v_measure")


def clustering_quality(
    embeddings: np.ndarray,
    labels: Sequence[int] | np.ndarray,
    truth: Sequence[str | None] | None = None,
    sample_size: int = 5000,
    seed: int = 0,
) -> dict:
    """All QUALITY_KEYS, always; a score that does not apply (fewer than 2 clusters, no truth) is None.

    Internal scores exclude noise (-1). External scores (ARI, NMI, V-measure) compare every row,
    with noise as one more label, and need a truth value for every row.
    """
    from sklearn.metrics import (
        adjusted_rand_score,
        davies_bouldin_score,
        normalized_mutual_info_score,
        silhouette_score,
        v_measure_score,
    )

    vectors = np.asarray(embeddings)
    labels = np.asarray(labels, dtype=np.int64)
    if len(vectors) != len(labels):
        raise ValueError(f"{len(vectors)} embeddings but {len(labels)} labels")
    n = len(labels)
    clustered = np.flatnonzero(labels >= 0)
    n_clusters = int(len(np.unique(labels[clustered])))
    result: dict = dict.fromkeys(QUALITY_KEYS)
    result["n_clusters"] = n_clusters
    result["noise_share"] = float((n - len(clustered)) / n) if n else 0.0

    if n_clusters >= 2:
        result["davies_bouldin"] = float(davies_bouldin_score(vectors[clustered], labels[clustered]))
        sample = clustered
        if len(sample) > sample_size:
            sample = np.sort(np.random.default_rng(seed).choice(clustered, size=sample_size, replace=False))
        sample_clusters = len(np.unique(labels[sample]))
        if 2 <= sample_clusters <= len(sample) - 1:
            result["silhouette"] = float(silhouette_score(vectors[sample], labels[sample], metric="cosine"))

    if truth is not None and len(truth) != n:
        raise ValueError(f"{len(truth)} truth labels for {n} rows")
    if truth is not None and n and all(value is not None for value in truth):
        truth_list = list(truth)
        result["ari"] = float(adjusted_rand_score(truth_list, labels))
        result["nmi"] = float(normalized_mutual_info_score(truth_list, labels))
        result["v_measure"] = float(v_measure_score(truth_list, labels))
    return result
