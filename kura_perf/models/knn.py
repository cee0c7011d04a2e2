"""The nearest-neighbour graph UMAP builds on, computed the way umap-learn computes it, so it can be
computed once and handed to more than one UMAP (the 5-d clustering reduction and the 2-d projection
use the same vectors, metric and n_neighbors).

umap-learn uses exact distances below 4096 points and NN-descent above; `knn_graph` does the same,
so a UMAP given the precomputed graph sees the neighbours it would have found itself.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

UMAP_EXACT_BELOW = 4096  # umap-learn's own threshold (umap_.py, "small data")


@dataclass(frozen=True)
class KnnGraph:
    """Each row's neighbours, itself first (UMAP's convention), and their distances."""

    indices: np.ndarray  # int64 (n, k)
    distances: np.ndarray  # float32 (n, k)
    metric: str

    @property
    def n_neighbors(self) -> int:
        return int(self.indices.shape[1])

    def fits(self, n_points: int, n_neighbors: int, metric: str) -> bool:
        """True when this graph is exactly what a UMAP over n_points with these settings would build."""
        return self.indices.shape[0] == n_points and self.n_neighbors == n_neighbors and self.metric == metric

    def for_umap(self) -> tuple:
        """UMAP's precomputed_knn tuple (no search index: transform() on new data is not needed here)."""
        return (self.indices, self.distances, None)


def knn_graph(vectors: np.ndarray, n_neighbors: int, metric: str = "cosine", random_state: int | None = 42) -> KnnGraph:
    matrix = np.asarray(vectors, dtype=np.float32)
    n = len(matrix)
    k = min(n_neighbors, n - 1) if n > 1 else 1
    if n < UMAP_EXACT_BELOW:
        from sklearn.metrics import pairwise_distances

        distances = pairwise_distances(matrix, metric=metric)
        np.fill_diagonal(distances, -1.0)  # self first, whatever ties the metric has
        indices = np.argsort(distances, axis=1, kind="stable")[:, :k]
        dists = np.take_along_axis(distances, indices, axis=1)
        dists[:, 0] = 0.0
        return KnnGraph(indices.astype(np.int64), dists.astype(np.float32), metric)
    from kura_perf.models.jit_cache import import_umap

    import_umap()  # umap's (and pynndescent's) numba code cached from the first function
    from umap.umap_ import nearest_neighbors

    indices, dists, _ = nearest_neighbors(matrix, k, metric, {}, False, np.random.RandomState(random_state),
                                          low_memory=True, n_jobs=1 if random_state is not None else -1)
    return KnnGraph(np.asarray(indices, dtype=np.int64), np.asarray(dists, dtype=np.float32), metric)
