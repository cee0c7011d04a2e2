"""Stage 3: embeddings -> base clusters (assignments, names, sizes) and their quality scores."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import pandas as pd

from kura_perf.errors import StageError
from kura_perf.models.protocols import ClusteringMethod, ClusterNamer, UsesClusterSizes
from kura_perf.stages.quality import clustering_quality

NOISE = -1
NAMING_SAMPLE = 50  # members per cluster shown to the namer, as Kura shows the LLM a sample
NOISE_NAME = "Unclustered"


@dataclass
class ClusterResult:
    assignments: pd.DataFrame  # chat_id, cluster_id (int; -1 = noise)
    clusters: pd.DataFrame  # cluster_id, name, description, size (a -1 row when there is noise)
    quality: dict  # see quality.QUALITY_KEYS
    centroids: np.ndarray  # one L2-normalised mean member vector per cluster 0..k-1 (noise excluded)


def cluster_summaries(
    summaries: pd.DataFrame,
    embeddings: np.ndarray,
    method: ClusteringMethod,
    namer: ClusterNamer,
    truth: Sequence[str | None] | None = None,
    quality_sample: int = 5000,
    seed: int = 0,
) -> ClusterResult:
    """Cluster, renumber clusters 0..k-1, name each from a seeded sample of members' embed_text."""
    n = len(summaries)
    if len(embeddings) != n:
        raise StageError(f"clusters: {len(embeddings)} embeddings for {n} summaries")
    if truth is not None and len(truth) != n:
        raise StageError(f"clusters: {len(truth)} ground-truth labels for {n} summaries")

    raw = np.asarray(method.fit_predict(embeddings))
    if raw.shape != (n,) or (n and not np.issubdtype(raw.dtype, np.integer)):
        raise StageError(f"clusters: method '{method.name}' returned labels of shape {raw.shape}, dtype {raw.dtype}")
    labels = _renumber(raw.astype(np.int64))

    assignments = pd.DataFrame({"chat_id": summaries["chat_id"].to_numpy(), "cluster_id": labels})
    clusters = _name_clusters(summaries["embed_text"].tolist(), labels, namer, seed)
    quality = clustering_quality(embeddings, labels, truth=truth, sample_size=quality_sample, seed=seed)
    return ClusterResult(assignments=assignments, clusters=clusters, quality=quality,
                         centroids=cluster_centroids(embeddings, labels))


def cluster_centroids(embeddings: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Row c: the L2-normalised mean of cluster c's member vectors (labels 0..k-1; noise excluded).

    What the reference's meta-clustering groups clusters by (stages/meta_clusters.py): the members'
    own vectors, where Kura embeds each cluster's generated name."""
    vectors = np.asarray(embeddings, dtype=np.float64)
    k = int(labels.max()) + 1 if len(labels) and labels.max() >= 0 else 0
    dimension = vectors.shape[1] if vectors.ndim == 2 else 0
    sums = np.zeros((k, dimension))
    clustered = labels >= 0
    np.add.at(sums, labels[clustered], vectors[clustered])
    norms = np.linalg.norm(sums, axis=1, keepdims=True)
    return (sums / np.where(norms > 0, norms, 1.0)).astype(np.float32)


def _renumber(labels: np.ndarray) -> np.ndarray:
    """Map the method's labels to 0..k-1 in ascending order, keeping -1 (and any negative) as noise."""
    out = np.full(len(labels), NOISE, dtype=np.int64)
    clustered = labels >= 0
    if clustered.any():
        _, out[clustered] = np.unique(labels[clustered], return_inverse=True)
    return out


def sample_members(members: np.ndarray, limit: int, rng: np.random.Generator) -> np.ndarray:
    """Up to `limit` of `members`, chosen by `rng`, in their original order (deterministic per seed)."""
    if len(members) <= limit:
        return members
    return np.sort(rng.choice(members, size=limit, replace=False))


def name_groups(namer: ClusterNamer, groups: list[list[str]], sizes: list[int]) -> list[tuple[str, str]]:
    """Ask the namer for names, passing true sizes when it uses them (UsesClusterSizes; its groups may be samples)."""
    if isinstance(namer, UsesClusterSizes):
        named = namer.name_clusters(groups, sizes=sizes)
    else:
        named = namer.name_clusters(groups)
    if len(named) != len(groups):
        raise StageError(f"naming: namer '{namer.name}' returned {len(named)} names for {len(groups)} clusters")
    return [(str(name), str(description)) for name, description in named]


def _name_clusters(texts: list[str], labels: np.ndarray, namer: ClusterNamer, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    cluster_ids = [int(c) for c in np.unique(labels) if c >= 0]
    members_by_cluster = {c: np.flatnonzero(labels == c) for c in cluster_ids}
    groups = [[texts[i] for i in sample_members(members_by_cluster[c], NAMING_SAMPLE, rng)] for c in cluster_ids]
    sizes = [len(members_by_cluster[c]) for c in cluster_ids]
    named = name_groups(namer, groups, sizes) if groups else []

    rows = [
        {"cluster_id": c, "name": name, "description": description, "size": size}
        for c, (name, description), size in zip(cluster_ids, named, sizes)
    ]
    noise_size = int((labels == NOISE).sum())
    if noise_size:
        rows.append(
            {
                "cluster_id": NOISE,
                "name": NOISE_NAME,
                "description": f"{noise_size} conversations the clustering method left as noise.",
                "size": noise_size,
            }
        )
    frame = pd.DataFrame(rows, columns=["cluster_id", "name", "description", "size"])
    return frame.astype({"cluster_id": "int64", "size": "int64"})
