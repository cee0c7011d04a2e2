"""2-D projections behind the ProjectionMethod protocol: UMAP (what Kura uses) and PCA (the cheap baseline)."""

from __future__ import annotations

import numpy as np

from kura_perf.errors import KuraPerfError
from kura_perf.models.jit_cache import import_umap
from kura_perf.models.protocols import ReusesKnnGraph

# Below this many points UMAP's spectral initialisation and k-NN graph are not meaningful.
UMAP_MIN_POINTS = 5


def _as_matrix(vectors: np.ndarray) -> np.ndarray:
    matrix = np.asarray(vectors, dtype=np.float32)
    if matrix.ndim != 2:
        raise KuraPerfError(f"projection expects a 2-D array of vectors, got shape {matrix.shape}")
    return matrix


class PCAProjection:
    """Principal components 1 and 2: deterministic, linear, and fast at any scale."""

    name = "pca"

    def __init__(self) -> None:
        self.params: dict = {}

    def fit_transform(self, vectors: np.ndarray) -> np.ndarray:
        from sklearn.decomposition import PCA

        matrix = _as_matrix(vectors)
        n, d = matrix.shape
        out = np.zeros((n, 2), dtype=np.float32)
        components = min(2, n, d)
        if n < 2 or components == 0 or not np.ptp(matrix, axis=0).any():
            return out  # nothing to project: too few points, or all identical
        projected = PCA(n_components=components, svd_solver="full").fit_transform(matrix)
        out[:, :components] = projected
        return out


class UMAPProjection(ReusesKnnGraph):
    """umap-learn with cosine metric as in Kura's HDBUMAP; n_neighbors is clipped to n - 1.

    A fixed random_state makes UMAP reproducible but single-threaded (umap-learn's rule); below
    UMAP_MIN_POINTS points it falls back to PCA rather than fail.
    """

    name = "umap"

    def __init__(
        self, n_neighbors: int = 15, min_dist: float = 0.1, random_state: int | None = 42, metric: str = "cosine"
    ) -> None:
        if n_neighbors < 2:
            raise KuraPerfError(f"n_neighbors must be at least 2 (got {n_neighbors})")
        self.n_neighbors = n_neighbors
        self.min_dist = min_dist
        self.random_state = random_state
        self.metric = metric
        self.reused_knn = False  # whether the last fit used a graph handed in

    @property
    def params(self) -> dict:
        return {
            "n_neighbors": self.n_neighbors,
            "min_dist": self.min_dist,
            "random_state": self.random_state,
            "metric": self.metric,
        }

    def fit_transform(self, vectors: np.ndarray, knn=None) -> np.ndarray:
        """`knn`: a KnnGraph of the same vectors (e.g. from the clustering's reduction); used when it is
        exactly the graph this UMAP would build (same n, n_neighbors and metric), else computed here."""
        matrix = _as_matrix(vectors)
        n = len(matrix)
        if n < UMAP_MIN_POINTS:
            return PCAProjection().fit_transform(matrix)
        import_umap()  # before `from umap`: umap's eager functions cached too, their compiles timed
        from umap import UMAP

        k = min(self.n_neighbors, n - 1)
        self.reused_knn = knn is not None and knn.fits(n, k, self.metric)
        extra = {"precomputed_knn": knn.for_umap()} if self.reused_knn else {}
        reducer = UMAP(
            n_components=2,
            n_neighbors=min(self.n_neighbors, n - 1),
            min_dist=self.min_dist,
            metric=self.metric,
            random_state=self.random_state,
            n_jobs=1 if self.random_state is not None else -1,  # umap-learn forces 1 when seeded
            # Spectral initialisation needs a well-connected k-NN graph; tiny sets do not have one.
            init="spectral" if n > 2 * self.n_neighbors else "random",
            **extra,
        )
        import warnings

        with warnings.catch_warnings():  # "no search index: transform unavailable": we never transform
            warnings.filterwarnings("ignore", message=".*knn_search_index.*")
            return np.asarray(reducer.fit_transform(matrix), dtype=np.float32)
