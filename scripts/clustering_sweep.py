"""Sweep the umap-hdbscan parameters on saved embeddings (how the `offline` defaults were chosen).

Embeddings are computed once per corpus (see embed_corpus.py) and saved as <tag>.npy + <tag>.json
(truth labels, texts); this script only clusters. UMAP reductions are cached beside them.

    python scripts/clustering_sweep.py /tmp/clustering-quality n1000_s0_t48 [more tags] [--grid=15x5,10x5] > sweep.jsonl
"""

from __future__ import annotations

import itertools
import json
import math
import sys
import time
from pathlib import Path

import numpy as np

from kura_perf.models.clustering import HDBSCANMethod, KMeansMethod, UMAPHDBSCANMethod, assign_noise_to_nearest
from kura_perf.models.knn import knn_graph
from kura_perf.stages.level_quality import truth_scores

NEIGHBORS = (10, 15, 30)
COMPONENTS = (2, 5, 10)
SIZES = ("10", "15", "25", "50", "n/400", "n/200", "n/100")
UMAP_SEEDS = (42,)


def emit(**row):
    print(json.dumps({k: (round(v, 4) if isinstance(v, float) else v) for k, v in row.items()}), flush=True)


def scores(labels, truth):
    s = truth_scores(labels, truth)
    return {"n_clusters": int(len(set(labels[labels >= 0]))), "noise": float((labels < 0).mean()), **s}


def size_value(rule: str, n: int) -> int:
    return int(rule) if rule.isdigit() else max(10, math.ceil(n / int(rule.split("/")[1])))


def main(folder: str, tags: list[str]) -> None:
    root = Path(folder)
    for tag in tags:
        vectors = np.load(root / f"{tag}.npy")
        truth = json.load(open(root / f"{tag}.json"))["truth"]
        n = len(vectors)
        for name, method in (("hdbscan-raw", HDBSCANMethod(min_cluster_size=10)),
                             ("kmeans-n/10", KMeansMethod(clusters_per_group=10)),
                             ("kmeans-true-k", KMeansMethod(n_clusters=len(set(truth))))):
            if name == "hdbscan-raw" and n > 5000 and "--raw" not in sys.argv:
                continue
            if "--no-baselines" in sys.argv:
                continue
            t = time.perf_counter()
            labels = method.fit_predict(vectors)
            emit(tag=tag, method=name, s=time.perf_counter() - t, **scores(labels, truth))
        grid = [tuple(int(x) for x in pair.split("x")) for pair in _option("--grid", "").split(",") if pair] or \
            list(itertools.product(NEIGHBORS, COMPONENTS))
        for nn in sorted({nn for nn, _ in grid}):
            t = time.perf_counter()
            knn = knn_graph(vectors, nn)
            emit(tag=tag, method="knn", nn=nn, s=time.perf_counter() - t)
            seeds = tuple(int(x) for x in _option("--seeds", "").split(",") if x) or UMAP_SEEDS
            for nc, seed in itertools.product(sorted({c for n_, c in grid if n_ == nn}), seeds):
                cache = root / f"red_{tag}_nn{nn}_nc{nc}_rs{seed}.npy"
                if cache.exists():
                    reduced, umap_s = np.load(cache), None
                else:
                    t = time.perf_counter()
                    reduced = UMAPHDBSCANMethod(n_components=nc, n_neighbors=nn, random_state=seed).reduce(vectors, knn)
                    umap_s = time.perf_counter() - t
                    np.save(cache, reduced)
                for rule, sel, ms in itertools.product(SIZES, ("eom", "leaf"), (None, 5)):
                    size = size_value(rule, n)
                    t = time.perf_counter()
                    labels = HDBSCANMethod(min_cluster_size=size, min_samples=ms, cluster_selection_method=sel,
                                           core_dist_n_jobs=1).fit_predict(reduced)
                    hs = time.perf_counter() - t
                    base = dict(tag=tag, method="umap-hdbscan", nn=nn, nc=nc, rs=seed, mcs=rule, size=size, sel=sel,
                                ms=ms, umap_s=umap_s, hdbscan_s=hs)
                    emit(**base, assign=False, **scores(labels, truth))
                    emit(**base, assign=True, **scores(assign_noise_to_nearest(reduced, labels), truth))


def _option(name: str, default: str) -> str:
    """--name=value from the command line (e.g. --grid=15x5,10x5: n_neighbors x n_components pairs)."""
    return next((a.split("=", 1)[1] for a in sys.argv if a.startswith(name + "=")), default)


if __name__ == "__main__":
    main(sys.argv[1], [a for a in sys.argv[2:] if not a.startswith("--")])
