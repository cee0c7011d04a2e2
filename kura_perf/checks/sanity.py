"""Sanity: is a stage's stored output internally consistent and consistent with its inputs?

Blocking in Dagster: a stage that "succeeded" but wrote bad data (NaN vectors, lost conversations,
a broken hierarchy) must stop the pipeline before later stages are measured on garbage.
Only the columns a rule needs are read, so the check stays cheap at 100K.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from kura_perf.checks.outcome import ERROR, CheckOutcome
from kura_perf.files.outputs import _file_name, has_stage
from kura_perf.models.sentence_transformer import MINILM_DIMENSION
from kura_perf.profiles import Profile

NOISE = -1


class _Problems(list):
    def need(self, condition: bool, message: str) -> bool:
        if not condition:
            self.append(message)
        return bool(condition)


def _table(folder: Path, stage: str, key: str = "main", columns: list[str] | None = None) -> pd.DataFrame:
    path = folder / _file_name(stage, key, ".parquet")
    try:
        return pd.read_parquet(path, columns=columns)
    except Exception as exc:  # noqa: BLE001 - name the file whatever pyarrow raised
        raise ValueError(f"{path}: {type(exc).__name__}: {exc}") from None


def _array(folder: Path, stage: str, key: str = "main") -> np.ndarray:
    path = folder / _file_name(stage, key, ".npy")
    try:
        return np.load(path)
    except Exception as exc:  # noqa: BLE001 - e.g. "No data left in file": say which file
        raise ValueError(f"{path}: {type(exc).__name__}: {exc}") from None


def _ids(folder: Path, stage: str, key: str = "main") -> pd.Series:
    return _table(folder, stage, key, ["chat_id"])["chat_id"]


def expected_dimension(profile: Profile) -> int | None:
    """The embedding model's dimension without loading the model."""
    if profile.embedding_dimension:
        return profile.embedding_dimension
    if profile.embedding_model == "minilm":
        return MINILM_DIMENSION
    if profile.embedding_model.startswith("openai:"):
        from kura_perf.models.openai_api import NATIVE_EMBEDDING_DIMENSIONS  # openai, aiohttp: only for API models

        return NATIVE_EMBEDDING_DIMENSIONS.get(profile.embedding_model.split(":", 1)[1], 1536)
    return None


def _same_ids(p: _Problems, ids: pd.Series, conversation_ids: pd.Series, what: str) -> None:
    p.need(not ids.duplicated().any(), f"{what}: {int(ids.duplicated().sum())} duplicate chat_id(s)")
    missing = set(conversation_ids) - set(ids)
    extra = set(ids) - set(conversation_ids)
    p.need(not missing, f"{what}: {len(missing)} conversation(s) missing (e.g. {sorted(missing)[:3]})")
    p.need(not extra, f"{what}: {len(extra)} chat_id(s) that are not conversations (e.g. {sorted(extra)[:3]})")


def _conversations(folder: Path, profile: Profile, scale_n: int, p: _Problems) -> None:
    ids = _ids(folder, "conversations")
    p.need(len(ids) > 0, "conversations: none stored")
    p.need(ids.notna().all(), "conversations: null chat_id")
    p.need(not ids.duplicated().any(), f"conversations: {int(ids.duplicated().sum())} duplicate chat_id(s)")
    if not profile.data_file:  # synthetic: exactly the partition's count
        p.need(len(ids) == scale_n, f"conversations: {len(ids)} stored, the partition asks for {scale_n}")
    elif not profile.allow_short_data:
        p.need(len(ids) == scale_n, f"conversations: {len(ids)} loaded, the partition asks for {scale_n}")


def _summaries(folder: Path, p: _Problems) -> None:
    table = _table(folder, "summaries", columns=["chat_id", "summary", "embed_text"])
    _same_ids(p, table["chat_id"], _ids(folder, "conversations"), "summaries")
    empty = table["embed_text"].isna() | (table["embed_text"].astype(str).str.strip() == "")
    p.need(not empty.any(), f"summaries: {int(empty.sum())} empty embed_text")


def _embeddings(folder: Path, profile: Profile, p: _Problems) -> None:
    vectors = _array(folder, "embeddings")
    summary_ids = _ids(folder, "summaries")
    dim = expected_dimension(profile)
    if not p.need(vectors.ndim == 2, f"embeddings: array of shape {vectors.shape}, expected 2-D"):
        return
    p.need(len(vectors) == len(summary_ids), f"embeddings: {len(vectors)} rows for {len(summary_ids)} summaries")
    p.need(dim is None or vectors.shape[1] == dim, f"embeddings: dimension {vectors.shape[1]}, the model gives {dim}")
    bad = int((~np.isfinite(vectors).all(axis=1)).sum()) if vectors.size else 0
    p.need(bad == 0, f"embeddings: {bad} row(s) with NaN/inf")
    ids = _ids(folder, "embeddings", "ids")
    p.need(ids.tolist() == summary_ids.tolist(), "embeddings: row order/ids differ from the summaries'")


def _clusters(folder: Path, p: _Problems) -> None:
    assignments = _table(folder, "clusters", "assignments", ["chat_id", "cluster_id"])
    clusters = _table(folder, "clusters", columns=["cluster_id", "size"])
    _same_ids(p, assignments["chat_id"], _ids(folder, "conversations"), "clusters")
    known = set(clusters["cluster_id"]) | {NOISE}
    unknown = set(assignments["cluster_id"]) - known
    p.need(not unknown, f"clusters: assignments to unknown cluster id(s) {sorted(unknown)[:5]}")
    p.need(not clusters["cluster_id"].duplicated().any(), "clusters: duplicate cluster ids")
    counts = assignments["cluster_id"].value_counts()
    wrong = [c for c, s in zip(clusters["cluster_id"], clusters["size"]) if counts.get(c, 0) != s]
    p.need(not wrong, f"clusters: size differs from the assignments for cluster(s) {wrong[:5]}")


def hierarchy_problems(table: pd.DataFrame, base_ids: set[int]) -> list[str]:
    """Is `table` a forest whose leaves are exactly the base clusters `base_ids`? (Pure, for tests.)"""
    p = _Problems()
    nodes = table["cluster_id"].tolist()
    p.need(len(set(nodes)) == len(nodes), "meta_clusters: duplicate node ids")
    parent = {n: (None if pd.isna(q) else q) for n, q in zip(table["cluster_id"], table["parent_id"])}
    dangling = {q for q in parent.values() if q is not None and q not in parent}
    p.need(not dangling, f"meta_clusters: parent(s) not in the table {sorted(dangling)[:5]}")
    for start in parent:  # every chain of parents must end at a root
        seen, node = set(), start
        while node is not None and node in parent and node not in seen:
            seen.add(node)
            node = parent[node]
        if node is not None and node in seen:
            p.append(f"meta_clusters: cycle through {start}")
            break
    has_children = {q for q in parent.values() if q is not None}
    leaves = table[table["is_leaf"].astype(bool)]
    p.need(not (set(leaves["cluster_id"]) & has_children), "meta_clusters: a leaf has children")
    childless_parents = set(table.loc[~table["is_leaf"].astype(bool), "cluster_id"]) - has_children
    p.need(not childless_parents, f"meta_clusters: parent node(s) without children {sorted(childless_parents)[:5]}")
    leaf_ids = set(int(v) for v in leaves["base_cluster_id"].dropna())
    p.need(leaf_ids == base_ids, f"meta_clusters: leaves {len(leaf_ids)} vs base clusters {len(base_ids)} "
                                 f"(missing {sorted(base_ids - leaf_ids)[:5]}, extra {sorted(leaf_ids - base_ids)[:5]})")
    return list(p)


def _meta_clusters(folder: Path, p: _Problems) -> None:
    table = _table(folder, "meta_clusters", columns=["cluster_id", "parent_id", "is_leaf", "base_cluster_id"])
    base = _table(folder, "clusters", columns=["cluster_id"])["cluster_id"]
    p.extend(hierarchy_problems(table, {int(c) for c in base if c != NOISE}))


def _projections(folder: Path, p: _Problems) -> None:
    table = _table(folder, "projections", columns=["chat_id", "x", "y"])
    _same_ids(p, table["chat_id"], _ids(folder, "conversations"), "projections")
    xy = table[["x", "y"]].to_numpy(dtype=float)
    bad = int((~np.isfinite(xy).all(axis=1)).sum()) if len(xy) else 0
    p.need(bad == 0, f"projections: {bad} non-finite coordinate row(s)")


def check_sanity(folder: Path, stage: str, profile: Profile, scale_n: int) -> CheckOutcome:
    """All rules for `stage`'s stored output in the partition `folder`. ERROR severity: it blocks."""
    p = _Problems()
    if not has_stage(folder, stage):
        return CheckOutcome("sanity", False, f"{stage}: no complete output in {folder}", ERROR)
    try:
        if stage == "conversations":
            _conversations(folder, profile, scale_n, p)
        elif stage == "embeddings":
            _embeddings(folder, profile, p)
        else:
            {"summaries": _summaries, "clusters": _clusters, "meta_clusters": _meta_clusters,
             "projections": _projections}[stage](folder, p)
    except (OSError, KeyError, ValueError) as exc:  # unreadable or missing file/column: bad data too
        p.append(f"{stage}: could not read the stored output: {type(exc).__name__}: {exc}")
    if p:
        return CheckOutcome("sanity", False, "; ".join(p), ERROR, value=len(p))
    return CheckOutcome("sanity", True, f"{stage}: output consistent", ERROR, value=0)
