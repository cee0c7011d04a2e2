"""Stage 4: base clusters -> a tree of meta clusters, the way Kura's MetaClusterModel builds it.

Kura (reduce_clusters_from_base_clusters) loops while there are more than max_clusters roots:
embed each root's name and description, k-means the roots into groups of about clusters_per_group
(KmeansClusteringMethod(12) by default), and inside each group let the LLM propose
ceil(g / 2) parent names (one when g < 3) and file every child under one of them. Offline, the
proposal-and-filing step is a k-means split of the group into that many parents, and the parents
are named by the namer. Roots are grouped by their embedded names (Kura's way) or, given
`base_vectors`, by their members' mean vector (the reference's way: a cluster's members say what it is
about more reliably than a short generated name; CLINC150 10K, domain level: ARI 0.08 by names, ~0.3 by
members, docs/reference-quality.md); a parent's vector is its children's size-weighted mean, and each
round divides all roots at once by MEMBER_REDUCTION with size-weighted k-means instead of halving
Kura's groups of 12. Unlike Kura, the loop stops after max_iterations (Kura has no cap, so a
reduction that stalls would loop forever); `cap_hit` says whether that happened.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import numpy as np
import pandas as pd

from kura_perf.errors import StageError
from kura_perf.models.clustering import kura_cluster_count
from kura_perf.models.protocols import ClusterNamer, EmbeddingModel
from kura_perf.stages.clusters import NOISE, name_groups
from kura_perf.stages.embeddings import check_embeddings

HIERARCHY_COLUMNS = (
    "cluster_id",  # str: "c<base id>" for base clusters, "m<level>-<k>" for parents
    "parent_id",  # str, or None for a root
    "level",  # 0 = base cluster; a parent made in iteration i has level i
    "name",
    "description",
    "size",  # conversations under this node
    "is_leaf",  # True exactly for base clusters
    "base_cluster_id",  # the int id in the clusters/assignments tables, for leaves; <NA> for parents
)
KURA_META_CLUSTERS_PER_GROUP = 12
# By members, each round divides the roots by this (Kura halves). The level nearest a truth's class count
# is then at most ~1.22x off it, not ~1.41x: synthetic 100K, 48 topics, from 2,118 base clusters,
# halving gives levels of 67 (ARI 0.885) and 34 (0.693); dividing by 1.5 gives 56 (0.934). It costs
# about twice the parents to name (n / (1.5 - 1) against n / (2 - 1)).
MEMBER_REDUCTION = 1.5


@dataclass
class Hierarchy:
    table: pd.DataFrame  # HIERARCHY_COLUMNS
    iterations: int  # reduction rounds run
    cap_hit: bool  # True when max_iterations stopped the loop with more than max_clusters roots

    @property
    def roots(self) -> int:
        return int(self.table["parent_id"].isna().sum())


def base_node_id(cluster_id: int) -> str:
    return f"c{int(cluster_id)}"


def build_hierarchy(
    clusters: pd.DataFrame,
    embedder: EmbeddingModel,
    namer: ClusterNamer,
    max_clusters: int = 10,
    max_iterations: int = 10,
    seed: int = 0,
    clusters_per_group: int = KURA_META_CLUSTERS_PER_GROUP,
    base_vectors: np.ndarray | None = None,
) -> Hierarchy:
    """Reduce the base clusters (noise excluded) until at most `max_clusters` roots remain.

    base_vectors: row c is base cluster c's vector (clusters.cluster_centroids); None: embed the names."""
    if max_clusters < 1:
        raise StageError(f"meta_clusters: max_clusters must be at least 1 (got {max_clusters})")
    if max_iterations < 0:
        raise StageError(f"meta_clusters: max_iterations must be 0 or more (got {max_iterations})")
    base = clusters[clusters["cluster_id"] != NOISE].sort_values("cluster_id")
    nodes: list[dict] = [
        {
            "cluster_id": base_node_id(row.cluster_id),
            "parent_id": None,
            "level": 0,
            "name": str(row.name),
            "description": str(row.description),
            "size": int(row.size),
            "is_leaf": True,
            "base_cluster_id": int(row.cluster_id),
        }
        for row in base.itertuples(index=False)
    ]
    if base_vectors is not None:
        if len(base_vectors) < len(nodes):
            raise StageError(f"meta_clusters: {len(base_vectors)} cluster vectors for {len(nodes)} base clusters")
        for node in nodes:
            node["vector"] = np.asarray(base_vectors[node["base_cluster_id"]], dtype=np.float64)
    roots = list(range(len(nodes)))
    iterations = 0
    while len(roots) > max_clusters and iterations < max_iterations:
        iterations += 1
        roots = _reduce_once(nodes, roots, iterations, embedder, namer, clusters_per_group, seed)
    for node in nodes:
        node.pop("vector", None)
    table = pd.DataFrame(nodes, columns=list(HIERARCHY_COLUMNS))
    table = table.astype({"level": "int64", "size": "int64", "is_leaf": "bool", "base_cluster_id": "Int64"})
    table["parent_id"] = table["parent_id"].astype(object).where(table["parent_id"].notna(), None)
    return Hierarchy(table=table, iterations=iterations, cap_hit=len(roots) > max_clusters)


def _reduce_once(
    nodes: list[dict],
    roots: list[int],
    level: int,
    embedder: EmbeddingModel,
    namer: ClusterNamer,
    clusters_per_group: int,
    seed: int,
) -> list[int]:
    """One Kura reduction round: returns the indices of the new parent nodes (the new roots)."""
    # Kura embeds str(Cluster), which is exactly this layout.
    texts = [f"Name: {nodes[i]['name']}\nDescription: {nodes[i]['description']}" for i in roots]
    if "vector" in nodes[roots[0]]:
        vectors = np.stack([nodes[i]["vector"] for i in roots])
    else:
        vectors = check_embeddings(embedder.embed(texts), len(texts), embedder.dimension, embedder.name)
    root_array = np.asarray(roots)

    parent_children: list[np.ndarray] = []
    by_members = "vector" in nodes[roots[0]]
    weights = np.array([nodes[i]["size"] for i in roots], dtype=np.float64) if by_members else None
    # Kura splits groups of ~12 locally; by members, one global size-weighted split halves the roots (a
    # local split cannot join two clusters of one topic that k-means put in different groups).
    groups = np.zeros(len(roots), dtype=np.int64) if by_members else \
        _kmeans_labels(vectors, kura_cluster_count(len(roots), clusters_per_group), seed)
    for group in np.unique(groups):
        positions = np.flatnonzero(groups == group)
        if by_members:  # a gentler step, so some level lands near any topic count
            wanted = max(1, min(len(positions) - 1, math.ceil(len(positions) / MEMBER_REDUCTION)))
        else:
            wanted = math.ceil(len(positions) / 2) if len(positions) >= 3 else 1
        split = _kmeans_labels(vectors[positions], wanted, seed,
                               weights=None if weights is None else weights[positions])
        for part in np.unique(split):
            children = positions[split == part]
            # Biggest child first: the namer breaks ties by first appearance, so the parent's name
            # leans towards where most of its conversations are.
            child_sizes = np.array([nodes[roots[p]]["size"] for p in children])
            parent_children.append(children[np.argsort(-child_sizes, kind="stable")])

    sizes = [int(sum(nodes[i]["size"] for i in root_array[children])) for children in parent_children]
    named = name_groups(namer, [[texts[p] for p in children] for children in parent_children], sizes)
    new_roots = []
    for k, (children, (name, description), size) in enumerate(zip(parent_children, named, sizes)):
        parent_id = f"m{level}-{k}"
        for child in root_array[children]:
            nodes[child]["parent_id"] = parent_id
        new_roots.append(len(nodes))
        vector = {}
        if "vector" in nodes[roots[0]]:
            weighted = sum(nodes[c]["size"] * nodes[c]["vector"] for c in root_array[children])
            vector = {"vector": weighted / max(float(np.linalg.norm(weighted)), 1e-12)}
        nodes.append(
            {
                "cluster_id": parent_id,
                "parent_id": None,
                "level": level,
                "name": name,
                "description": description,
                "size": size,
                "is_leaf": False,
                "base_cluster_id": None,
                **vector,
            }
        )
    return new_roots


def _kmeans_labels(vectors: np.ndarray, k: int, seed: int, weights: np.ndarray | None = None) -> np.ndarray:
    """Seeded k-means labels (weighted by `weights` when given); trivial cases (k = 1, k >= n) skip the fit."""
    n = len(vectors)
    if k <= 1:
        return np.zeros(n, dtype=np.int64)
    if k >= n:
        return np.arange(n, dtype=np.int64)
    from sklearn.cluster import KMeans

    with warnings.catch_warnings():
        # Identical names embed identically; k-means then finds fewer distinct clusters than k,
        # which is fine here (the round still shrinks the number of roots).
        warnings.simplefilter("ignore")
        return KMeans(n_clusters=k, n_init=1, random_state=seed).fit_predict(vectors, sample_weight=weights).astype(np.int64)
