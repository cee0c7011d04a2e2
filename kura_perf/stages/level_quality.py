"""Clustering quality per hierarchy level: the base clusters (level 0) and every meta-cluster level.

Kura's hierarchy is meant to start finer than the topics (k-means k = n/10) and merge upwards, so one
number for "the clustering" misleads: fine base clusters are judged by homogeneity (is each cluster
one topic?), and the level whose cluster count is nearest the true topic count by ARI and NMI.

A conversation's label at level L is its highest ancestor whose level is at most L: Kura's trees can be
ragged (a base cluster that became a root early keeps standing for its conversations above that).
Noise (-1) stays its own label at every level and counts in the external scores as one more label.

Truth can have levels too (kura_perf/stages/truth.py): every hierarchy level is scored against each
truth level, and each truth level has its own topic level.
"""

from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np
import pandas as pd

LEVEL_KEYS = ("level", "truth_level", "truth_rank", "true_classes", "n_clusters", "noise_share", "ari", "nmi",
              "homogeneity", "completeness", "topics_found", "silhouette", "is_topic_level")
FOUND_PURITY = 0.5  # a true topic is found when its majority cluster is more than half that topic


def truth_scores(labels: np.ndarray, truth: Sequence[str] | None) -> dict:
    """ARI, NMI, homogeneity, completeness and topics_found against ground truth (all None without it)."""
    keys = ("ari", "nmi", "homogeneity", "completeness", "topics_found")
    if truth is None or len(labels) == 0 or any(value is None for value in truth):
        return dict.fromkeys(keys)
    from sklearn.metrics import adjusted_rand_score, homogeneity_completeness_v_measure, normalized_mutual_info_score

    truth_list = list(truth)
    homogeneity, completeness, _ = homogeneity_completeness_v_measure(truth_list, labels)
    return {
        "ari": float(adjusted_rand_score(truth_list, labels)),
        "nmi": float(normalized_mutual_info_score(truth_list, labels)),
        "homogeneity": float(homogeneity),
        "completeness": float(completeness),
        "topics_found": topics_found(labels, truth_list),
    }


def topics_found(labels: np.ndarray, truth: Sequence[str], purity: float = FOUND_PURITY) -> float:
    """Share of true topics that are found: the cluster holding most of the topic's (non-noise)
    conversations is more than `purity` that topic. Two topics merged into one cluster: at most one
    of them is found; a topic split in two: still found if its biggest piece is pure."""
    frame = pd.DataFrame({"label": np.asarray(labels), "truth": list(truth)})
    topics = frame["truth"].nunique()
    clustered = frame[frame["label"] >= 0]
    if topics == 0 or clustered.empty:
        return 0.0
    counts = clustered.groupby(["truth", "label"]).size()
    cluster_sizes = clustered.groupby("label").size()
    found = 0
    for _topic, per_cluster in counts.groupby(level="truth"):
        (_, label), members = per_cluster.idxmax(), per_cluster.max()
        found += bool(members / cluster_sizes[label] > purity)
    return float(found / topics)


def silhouette(vectors: np.ndarray, labels: np.ndarray, sample_size: int, seed: int) -> float | None:
    """Cosine silhouette of the clustered (non-noise) rows, on a seeded sample above sample_size."""
    from sklearn.metrics import silhouette_score

    clustered = np.flatnonzero(labels >= 0)
    if len(clustered) > sample_size:
        clustered = np.sort(np.random.default_rng(seed).choice(clustered, size=sample_size, replace=False))
    k = len(np.unique(labels[clustered]))
    if not 2 <= k <= len(clustered) - 1:
        return None
    return float(silhouette_score(vectors[clustered], labels[clustered], metric="cosine"))


def labels_per_level(hierarchy: pd.DataFrame, base_labels: np.ndarray) -> dict[int, np.ndarray]:
    """{level: one label per conversation} from the hierarchy table and the base assignments."""
    base_labels = np.asarray(base_labels, dtype=np.int64)
    levels = sorted(int(v) for v in hierarchy["level"].unique()) if len(hierarchy) else [0]
    if 0 not in levels:
        levels = [0, *levels]
    # Roots have no parent (None in memory, None or NaN once read back from Parquet).
    parent = {node: (None if pd.isna(up) else up) for node, up in zip(hierarchy["cluster_id"], hierarchy["parent_id"])}
    level_of = dict(zip(hierarchy["cluster_id"], hierarchy["level"].astype(int)))
    leaves = hierarchy[hierarchy["is_leaf"]]
    leaf_node = {int(b): node for b, node in zip(leaves["base_cluster_id"], leaves["cluster_id"])}
    node_codes = {node: code for code, node in enumerate(hierarchy["cluster_id"])}

    out: dict[int, np.ndarray] = {0: base_labels.copy()}
    base_ids = [int(b) for b in np.unique(base_labels) if b >= 0]
    for level in levels:
        if level == 0:
            continue
        mapping = {}
        for base in base_ids:
            node = leaf_node.get(base)
            if node is None:  # a base cluster the hierarchy left out: it stands for itself
                mapping[base] = len(node_codes) + base
                continue
            while parent.get(node) is not None and level_of[parent[node]] <= level:
                node = parent[node]
            mapping[base] = node_codes[node]
        out[level] = np.array([mapping[int(b)] if b >= 0 else -1 for b in base_labels], dtype=np.int64)
    return out


def _as_truths(truth) -> dict[str, Sequence | None]:
    """{truth level: values}: a mapping as given (coarse to fine), a plain sequence as the one level
    'topic' (the single-truth callers), None as no truth at all ('topic', unscored)."""
    if isinstance(truth, Mapping):
        return dict(truth)
    return {"topic": truth}


def _scorable(values) -> bool:
    return values is not None and len(values) > 0 and all(value is not None for value in values)


def level_quality(
    level_labels: dict[int, np.ndarray],
    embeddings: np.ndarray | None,
    truth: Mapping[str, Sequence[str | None] | None] | Sequence[str | None] | None,
    sample_size: int = 5000,
    seed: int = 0,
) -> list[dict]:
    """One dict (LEVEL_KEYS) per hierarchy level and truth level, ordered by truth level (coarse to
    fine, as given) then hierarchy level. `truth`: {truth level name: one value per row} (a plain
    sequence is the single truth level 'topic').

    For each truth level, is_topic_level marks the hierarchy level whose cluster count is nearest that
    truth level's class count (ties: the finer level); a truth level with a missing value is not scored
    (its scores None, no level marked), the others still are. truth_rank orders the truth levels
    (0 = coarsest; the finest has the highest rank). Silhouette does not depend on the truth: it is
    computed once per hierarchy level and repeated on each of its rows."""
    truths = _as_truths(truth)
    levels = sorted(level_labels)
    shared = {}
    for level in levels:
        labels = level_labels[level]
        n = len(labels)
        clustered = labels >= 0
        shared[level] = {
            "level": level, "n_clusters": int(len(np.unique(labels[clustered]))),
            "noise_share": float((~clustered).sum() / n) if n else 0.0,
            "silhouette": silhouette(np.asarray(embeddings), labels, sample_size, seed)
            if embeddings is not None and n else None}
    rows = []
    for rank, (name, values) in enumerate(truths.items()):
        scored = _scorable(values)
        classes = len(set(values)) if scored else None
        block = []
        for level in levels:
            row = dict(shared[level])
            row.update(truth_scores(level_labels[level], values if scored else None))
            row.update(truth_level=name, truth_rank=rank, true_classes=classes, true_topics=classes)
            block.append(row)
        nearest = min(block, key=lambda r: (abs(r["n_clusters"] - classes), r["level"]))["level"] \
            if classes else None
        for row in block:
            row["is_topic_level"] = row["level"] == nearest
        rows.extend(block)
    return rows


def finest_rows(rows: list[dict]) -> list[dict]:
    """The rows of the finest truth level (the highest truth_rank; rows written before truth levels
    existed have none and are all 'topic'): where one topic-level figure is shown, it is this one."""
    if not rows:
        return []
    ranks = [row.get("truth_rank") for row in rows]
    top = max((r for r in ranks if r is not None), default=None)
    return [row for row in rows if row.get("truth_rank") == top] if top is not None else list(rows)


def truth_level_names(rows: list[dict]) -> list[str]:
    """The truth levels of these rows, coarse to fine."""
    seen: dict[str, int] = {}
    for row in rows:
        name = row.get("truth_level") or "topic"
        seen.setdefault(name, row.get("truth_rank") or 0)
    return sorted(seen, key=lambda name: seen[name])
