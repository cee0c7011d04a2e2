"""Base-clustering methods behind the ClusteringMethod protocol: UMAP-reduced HDBSCAN (the reference
default), HDBSCAN on raw vectors, k-means, agglomerative.

The raw ones mirror how Kura 0.5.4 calls the underlying library (kura/hdbscan.py, kura/k_means.py);
all expose `name` and `params` so a run record says exactly what was used.
"""

from __future__ import annotations

import math

import numpy as np

from kura_perf.errors import KuraPerfError
from kura_perf.models.jit_cache import import_umap
from kura_perf.models.knn import knn_graph
from kura_perf.models.protocols import BuildsKnnGraph, ReportsFit
from kura_perf.models.size_selection import choose_cluster_size

MINIBATCH_THRESHOLD = 20_000
# How umap-hdbscan gets HDBSCAN's min_cluster_size: "fixed" (max(min_cluster_size, n * min_cluster_share)),
# or "validity" (chosen per run by cluster validity over a grid from min_cluster_size up: size_selection.py).
SIZE_SELECTIONS = ("fixed", "validity")


def _as_matrix(vectors: np.ndarray) -> np.ndarray:
    matrix = np.asarray(vectors)
    if matrix.ndim != 2:
        raise KuraPerfError(f"clustering expects a 2-D array of vectors, got shape {matrix.shape}")
    return matrix


def kura_cluster_count(n_points: int, clusters_per_group: int) -> int:
    """Kura's k-means rule: ceil(n / clusters_per_group), at least 1 and at most n."""
    if clusters_per_group < 1:
        raise KuraPerfError(f"clusters_per_group must be at least 1 (got {clusters_per_group})")
    return max(1, min(n_points, math.ceil(n_points / clusters_per_group)))


class HDBSCANMethod:
    """HDBSCAN (the `hdbscan` package) with Kura's defaults; density-based, so it may label noise (-1).

    min_samples=None means min_samples = min_cluster_size, as in Kura. Euclidean distance on
    L2-normalised embeddings orders neighbours exactly as cosine distance does.
    """

    name = "hdbscan"

    def __init__(
        self,
        min_cluster_size: int = 10,
        min_samples: int | None = None,
        cluster_selection_epsilon: float = 0.0,
        cluster_selection_method: str = "eom",
        metric: str = "euclidean",
        core_dist_n_jobs: int = 4,  # the hdbscan package's default, so what Kura runs with
    ) -> None:
        if min_cluster_size < 2:
            raise KuraPerfError(f"min_cluster_size must be at least 2 (got {min_cluster_size})")
        self.min_cluster_size = min_cluster_size
        self.min_samples = min_samples if min_samples is not None else min_cluster_size
        self.cluster_selection_epsilon = cluster_selection_epsilon
        self.cluster_selection_method = cluster_selection_method
        self.metric = metric
        self.core_dist_n_jobs = core_dist_n_jobs

    @property
    def params(self) -> dict:
        return {
            "min_cluster_size": self.min_cluster_size,
            "min_samples": self.min_samples,
            "cluster_selection_epsilon": self.cluster_selection_epsilon,
            "cluster_selection_method": self.cluster_selection_method,
            "metric": self.metric,
            "core_dist_n_jobs": self.core_dist_n_jobs,
        }

    def fit_predict(self, vectors: np.ndarray) -> np.ndarray:
        import hdbscan

        matrix = _as_matrix(vectors)
        n = len(matrix)
        if n < self.min_cluster_size or n < 2:
            # Too few points to form even one cluster: all noise, which is what HDBSCAN means.
            return np.full(n, -1, dtype=np.int64)
        clusterer = hdbscan.HDBSCAN(
            min_cluster_size=self.min_cluster_size,
            min_samples=min(self.min_samples, n - 1),
            cluster_selection_epsilon=self.cluster_selection_epsilon,
            cluster_selection_method=self.cluster_selection_method,
            metric=self.metric,
            core_dist_n_jobs=self.core_dist_n_jobs,
        )
        return clusterer.fit_predict(matrix.astype(np.float64, copy=False)).astype(np.int64)


class KMeansMethod:
    """k-means with a fixed k, or Kura's rule k = ceil(n / clusters_per_group) when n_clusters is None.

    Full KMeans up to `minibatch_threshold` points; above it MiniBatchKMeans (as Kura's
    MiniBatchKmeansClusteringMethod does for large sets), because Lloyd iterations over every point
    with thousands of centroids dominate the run time there. n_init=1 matches what Kura gets from
    sklearn's default (n_init="auto" is one k-means++ run): each extra init multiplies the cost, and
    with Kura's rule k grows with n, so the cost grows with n^2 (10k x 384-d, k=1000: minutes).
    Seeded, so labels are reproducible.
    """

    name = "kmeans"

    def __init__(
        self,
        n_clusters: int | None = None,
        clusters_per_group: int = 10,
        n_init: int = 1,
        random_state: int = 0,
        minibatch_threshold: int = MINIBATCH_THRESHOLD,
        minibatch_size: int = 4096,
    ) -> None:
        if n_clusters is not None and n_clusters < 1:
            raise KuraPerfError(f"n_clusters must be at least 1 (got {n_clusters})")
        if clusters_per_group < 1:
            raise KuraPerfError(f"clusters_per_group must be at least 1 (got {clusters_per_group})")
        self.n_clusters = n_clusters
        self.clusters_per_group = clusters_per_group
        self.n_init = n_init
        self.random_state = random_state
        self.minibatch_threshold = minibatch_threshold
        self.minibatch_size = minibatch_size

    @property
    def params(self) -> dict:
        return {
            "n_clusters": self.n_clusters,
            "clusters_per_group": self.clusters_per_group,
            "n_init": self.n_init,
            "random_state": self.random_state,
            "minibatch_threshold": self.minibatch_threshold,
            "minibatch_size": self.minibatch_size,
        }

    def cluster_count(self, n_points: int) -> int:
        if self.n_clusters is not None:
            return max(1, min(self.n_clusters, n_points))
        return kura_cluster_count(n_points, self.clusters_per_group)

    def fit_predict(self, vectors: np.ndarray) -> np.ndarray:
        from sklearn.cluster import KMeans, MiniBatchKMeans

        matrix = _as_matrix(vectors)
        n = len(matrix)
        if n == 0:
            return np.zeros(0, dtype=np.int64)
        k = self.cluster_count(n)
        if k == 1:
            return np.zeros(n, dtype=np.int64)
        if n > self.minibatch_threshold:
            model = MiniBatchKMeans(
                n_clusters=k,
                batch_size=min(max(self.minibatch_size, 3 * k), n),
                n_init=self.n_init,
                random_state=self.random_state,
            )
        else:
            model = KMeans(n_clusters=k, n_init=self.n_init, random_state=self.random_state)
        return model.fit_predict(matrix).astype(np.int64)


class AgglomerativeMethod:
    """sklearn AgglomerativeClustering; needs O(n^2) memory, so it refuses above `max_points`.

    With neither n_clusters nor distance_threshold, k follows Kura's k-means rule
    (ceil(n / clusters_per_group)) so the methods are comparable at equal cluster counts.
    """

    name = "agglomerative"

    def __init__(
        self,
        n_clusters: int | None = None,
        distance_threshold: float | None = None,
        linkage: str = "ward",
        clusters_per_group: int = 10,
        max_points: int = 20_000,
    ) -> None:
        if n_clusters is not None and distance_threshold is not None:
            raise KuraPerfError("give agglomerative clustering n_clusters or distance_threshold, not both")
        if linkage not in ("ward", "complete", "average", "single"):
            raise KuraPerfError(
                f"unknown linkage '{linkage}'; expected one of ward, complete, average, single"
            )
        self.n_clusters = n_clusters
        self.distance_threshold = distance_threshold
        self.linkage = linkage
        self.clusters_per_group = clusters_per_group
        self.max_points = max_points

    @property
    def params(self) -> dict:
        return {
            "n_clusters": self.n_clusters,
            "distance_threshold": self.distance_threshold,
            "linkage": self.linkage,
            "clusters_per_group": self.clusters_per_group,
            "max_points": self.max_points,
        }

    def fit_predict(self, vectors: np.ndarray) -> np.ndarray:
        from sklearn.cluster import AgglomerativeClustering

        matrix = _as_matrix(vectors)
        n = len(matrix)
        if n > self.max_points:
            distance_gb = n * (n - 1) / 2 * 8 / 1e9
            raise KuraPerfError(
                f"agglomerative clustering refuses {n} points (max_points={self.max_points}): it needs "
                f"O(n^2) memory, about {distance_gb:.1f} GB of pairwise distances alone; "
                "use k-means or HDBSCAN at this scale, or raise max_points deliberately"
            )
        if n == 0:
            return np.zeros(0, dtype=np.int64)
        if n == 1:
            return np.zeros(1, dtype=np.int64)
        if self.distance_threshold is not None:
            model = AgglomerativeClustering(
                n_clusters=None, distance_threshold=self.distance_threshold, linkage=self.linkage
            )
        else:
            k = self.n_clusters or kura_cluster_count(n, self.clusters_per_group)
            model = AgglomerativeClustering(n_clusters=max(1, min(k, n)), linkage=self.linkage)
        return model.fit_predict(matrix).astype(np.int64)


class UMAPHDBSCANMethod(BuildsKnnGraph, ReportsFit):
    """BERTopic's recipe: UMAP to a few dimensions (cosine), then HDBSCAN on the reduced vectors.

    Density clustering in 384 dimensions finds almost nothing (distances concentrate: on the 1K synthetic
    corpus raw HDBSCAN gives 2 clusters, ARI 0.002); after UMAP the topics are dense, separated blobs.
    min_dist 0 packs neighbours tightly, which is what a density clusterer wants (the 2-D projection
    for people keeps its own min_dist). The defaults come from measurements in profiles.toml.

    HDBSCAN's min_cluster_size: by default (size_selection "validity") chosen per fit from a geometric grid
    (min_cluster_size x size_step^k, up to max_size_share of n) by HDBSCAN's relative validity on the
    reduced vectors (kura_perf/models/size_selection.py), so no topic size is assumed. With "fixed" it is
    max(min_cluster_size, ceil(n * min_cluster_share)): the previous default (1% of n) found at most ~100
    clusters at any scale and merged topics at 100K (synthetic: 43 of 48, ARI 0.34); a fixed 10 shattered
    10K (349 clusters, ARI 0.22). Noise (-1) joins the cluster of its nearest clustered neighbour in the
    reduced space when assign_noise (the default; fit_report() keeps HDBSCAN's own noise share).

    The k-NN graph of the input is kept (`knn`) so the 2-D projection can reuse it; one can also be
    passed in (`fit_predict(vectors, knn=...)`) when it already exists.
    """

    name = "umap-hdbscan"

    def __init__(
        self,
        n_components: int = 5,
        n_neighbors: int = 15,
        min_dist: float = 0.0,
        metric: str = "cosine",
        random_state: int | None = 42,
        min_cluster_size: int = 5,
        min_cluster_share: float = 0.0,
        min_samples: int | None = 5,
        cluster_selection_method: str = "eom",
        assign_noise: bool = True,
        size_selection: str | None = None,
        size_step: float = 1.25,
        max_size_share: float = 0.1,
    ) -> None:
        if size_selection is None:  # a profile that sets a share (the previous rule) keeps meaning what it said
            size_selection = "fixed" if min_cluster_share else "validity"
        if size_selection not in SIZE_SELECTIONS:
            raise KuraPerfError(f"size_selection must be one of {', '.join(SIZE_SELECTIONS)} (got '{size_selection}')")
        if size_selection == "validity" and min_cluster_share:
            raise KuraPerfError("size_selection 'validity' chooses min_cluster_size from the data; "
                                f"min_cluster_share {min_cluster_share} would override it (set it to 0)")
        if size_step <= 1.0:
            raise KuraPerfError(f"size_step must be above 1 (got {size_step})")
        if not 0.0 < max_size_share <= 0.5:
            raise KuraPerfError(f"max_size_share must be in (0, 0.5] (got {max_size_share})")
        if n_components < 1:
            raise KuraPerfError(f"n_components must be at least 1 (got {n_components})")
        if n_neighbors < 2:
            raise KuraPerfError(f"n_neighbors must be at least 2 (got {n_neighbors})")
        if not 0.0 <= min_cluster_share < 1.0:
            raise KuraPerfError(f"min_cluster_share must be in [0, 1) (got {min_cluster_share})")
        if cluster_selection_method not in ("eom", "leaf"):
            raise KuraPerfError(f"cluster_selection_method must be 'eom' or 'leaf' (got '{cluster_selection_method}')")
        self.n_components = n_components
        self.n_neighbors = n_neighbors
        self.min_dist = min_dist
        self.metric = metric
        self.random_state = random_state
        self.hdbscan = HDBSCANMethod(min_cluster_size=min_cluster_size, min_samples=min_samples,
                                     cluster_selection_method=cluster_selection_method)
        self.min_cluster_size = min_cluster_size
        self.min_cluster_share = min_cluster_share
        self.min_samples = min_samples
        self.cluster_selection_method = cluster_selection_method
        self.assign_noise = assign_noise
        self.size_selection = size_selection
        self.size_step = size_step
        self.max_size_share = max_size_share
        self.size_choice = None  # SizeChoice of the last fit (size_selection "validity")
        self.hdbscan_noise_share: float | None = None  # before assign_noise, of the last fit
        self.knn = None  # KnnGraph of the last fit's input
        self.reduced: np.ndarray | None = None  # the last fit's reduced vectors

    @property
    def params(self) -> dict:
        return {
            "n_components": self.n_components,
            "n_neighbors": self.n_neighbors,
            "min_dist": self.min_dist,
            "metric": self.metric,
            "random_state": self.random_state,
            "min_cluster_size": self.min_cluster_size,
            "min_cluster_share": self.min_cluster_share,
            "min_samples": self.min_samples,
            "cluster_selection_method": self.cluster_selection_method,
            "assign_noise": self.assign_noise,
            "size_selection": self.size_selection,
            "size_step": self.size_step,
            "max_size_share": self.max_size_share,
        }

    def fit_report(self) -> dict:
        """What the last fit decided from the data (for the stage record): the chosen size and why."""
        report: dict = {"hdbscan_noise_share": self.hdbscan_noise_share}
        if self.size_choice is not None:
            report["chosen_min_cluster_size"] = self.size_choice.size
            report["size_candidates"] = self.size_choice.candidates
        return report

    def cluster_size_for(self, n_points: int) -> int:
        """The min_cluster_size HDBSCAN gets for n_points: the floor, or the share of n when larger."""
        return max(self.min_cluster_size, math.ceil(n_points * self.min_cluster_share))

    def reduce(self, vectors: np.ndarray, knn=None) -> np.ndarray:
        matrix = _as_matrix(vectors).astype(np.float32, copy=False)
        n = len(matrix)
        k = min(self.n_neighbors, n - 1)
        import_umap()  # before `from umap`: umap's eager functions cached too, their compiles timed
        if knn is None or not knn.fits(n, k, self.metric):
            knn = knn_graph(matrix, k, self.metric, self.random_state)
        self.knn = knn
        from umap import UMAP

        reducer = UMAP(
            n_components=self.n_components,
            n_neighbors=k,
            min_dist=self.min_dist,
            metric=self.metric,
            random_state=self.random_state,
            n_jobs=1 if self.random_state is not None else -1,  # umap-learn forces 1 when seeded
            init="spectral" if n > 2 * k else "random",
            precomputed_knn=knn.for_umap(),
        )
        import warnings

        with warnings.catch_warnings():  # "no search index: transform unavailable": we never transform
            warnings.filterwarnings("ignore", message=".*knn_search_index.*")
            return np.asarray(reducer.fit_transform(matrix), dtype=np.float64)

    def fit_predict(self, vectors: np.ndarray, knn=None) -> np.ndarray:
        matrix = _as_matrix(vectors)
        n = len(matrix)
        size = self.cluster_size_for(n)
        if n < max(size, self.n_components + 2, 3):
            self.knn, self.reduced = None, None
            return np.full(n, -1, dtype=np.int64)  # too few points for a reduction or a cluster: all noise
        self.reduced = self.reduce(matrix, knn)
        if self.size_selection == "validity":
            self.size_choice = choose_cluster_size(
                self.reduced, floor=self.min_cluster_size, min_samples=self.min_samples or self.min_cluster_size,
                step=self.size_step, max_share=self.max_size_share, selection_method=self.cluster_selection_method)
            labels = self.size_choice.labels
        else:
            self.hdbscan.min_cluster_size = size
            self.hdbscan.min_samples = self.min_samples if self.min_samples is not None else size
            labels = self.hdbscan.fit_predict(self.reduced)
        self.hdbscan_noise_share = float(np.mean(labels < 0)) if len(labels) else 0.0
        if self.assign_noise:
            labels = assign_noise_to_nearest(self.reduced, labels)
        return labels


def assign_noise_to_nearest(points: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Each noise point (-1) takes the label of its nearest clustered point; all-noise stays all-noise."""
    labels = np.asarray(labels, dtype=np.int64).copy()
    noise = labels < 0
    if not noise.any() or noise.all():
        return labels
    from sklearn.neighbors import NearestNeighbors

    clustered = np.flatnonzero(~noise)
    nearest = NearestNeighbors(n_neighbors=1).fit(points[clustered]).kneighbors(points[noise], return_distance=False)
    labels[noise] = labels[clustered[nearest[:, 0]]]
    return labels


# Profile `clustering` value -> method: ModelFactory builds from it, profile validation checks
# clustering_params against each method's keyword arguments.
METHODS = {"umap-hdbscan": UMAPHDBSCANMethod, "hdbscan": HDBSCANMethod, "kmeans": KMeansMethod,
           "agglomerative": AgglomerativeMethod}
