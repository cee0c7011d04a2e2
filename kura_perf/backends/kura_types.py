"""Kura's types <-> the tables every backend stores, so checks, quality metrics and storage figures
apply to Kura's output exactly as to the reference's.

What Kura embeds is str(ConversationSummary), whose text depends on the release (0.5.4's includes
the summary's metadata: the conversation's metadata plus its turn count; 0.5.0's does not), so
embed_text is always that str() under the installed Kura. Since a release may embed the metadata,
the ground-truth topic must never be in a conversation's metadata: `kura_conversation` drops
truth-like keys and any value equal to the truth. The summaries table keeps the two fields our
columns lack (kura_topic, kura_metadata) so later stages rebuild the very summaries Kura made, and
`embed_text` is exactly the text Kura embedded (checked on every rebuild).
"""

from __future__ import annotations

import json
import re

import numpy as np
import pandas as pd
from kura.types import Cluster, ConversationSummary, ProjectedCluster
from kura.types import Conversation as KuraConversation
from kura.types import Message as KuraMessage

from kura_perf.corpus.types import Conversation
from kura_perf.errors import StageError
from kura_perf.models.protocols import SUMMARY_FIELDS
from kura_perf.stages.meta_clusters import HIERARCHY_COLUMNS, base_node_id

TRUTH_KEYS = frozenset({"topic", "label", "labels", "ground_truth", "truth", "category"})
KURA_SUMMARY_COLUMNS = ("kura_topic", "kura_metadata")  # beyond chat_id + SUMMARY_FIELDS + embed_text
_LIST_FIELDS = ("languages", "assistant_errors")
_SCORE_FIELDS = ("concerning_score", "user_frustration")


# -- conversations --------------------------------------------------------------------------------
def _kura_value(value):
    """A metadata value as Kura's metadata_dict allows it (scalars, flat lists), else its JSON text."""
    if isinstance(value, (str, int, float, bool)):
        return value
    if isinstance(value, list) and value and all(isinstance(v, (str, int, float)) for v in value):
        if len({type(v) for v in value}) == 1:
            return value
    return json.dumps(value, sort_keys=True, default=str)


def kura_metadata(conversation: Conversation, hidden: frozenset[str] = frozenset()) -> dict:
    """The conversation's metadata minus anything that could carry the ground truth: the usual truth
    keys, the topic's own value, and `hidden` (the profile's truth levels in the metadata, e.g. a
    CLINC150 conversation's 'domain')."""
    truth = conversation.topic
    return {key: _kura_value(value) for key, value in conversation.metadata.items()
            if key.lower() not in TRUTH_KEYS and key not in hidden and not (truth is not None and value == truth)}


def hidden_metadata_keys(truth_levels) -> frozenset[str]:
    """The top-level metadata keys that truth levels such as 'metadata.domain' read."""
    return frozenset(f.split(".")[1] for f in truth_levels if f.startswith("metadata.") and f.count(".") >= 1)


def kura_conversation(conversation: Conversation, hidden: frozenset[str] = frozenset()) -> KuraConversation:
    return KuraConversation(
        chat_id=conversation.chat_id,
        created_at=conversation.created_at,
        metadata=kura_metadata(conversation, hidden),
        messages=[KuraMessage(created_at=m.created_at, role=m.role, content=m.content) for m in conversation.messages],
    )


# -- summaries ------------------------------------------------------------------------------------
def summaries_to_table(summaries: list[ConversationSummary], chat_ids: list[str]) -> pd.DataFrame:
    """One row per conversation in `chat_ids` order; embed_text = str(summary), what Kura embeds."""
    by_id = {s.chat_id: s for s in summaries}
    missing = [c for c in chat_ids if c not in by_id]
    if missing or len(by_id) != len(chat_ids):
        raise StageError(f"summaries: Kura returned {len(summaries)} summaries for {len(chat_ids)} conversations "
                         f"(missing e.g. {missing[:3]})")
    rows = []
    for chat_id in chat_ids:
        summary = by_id[chat_id]
        row = {"chat_id": chat_id, **{name: getattr(summary, name) for name in SUMMARY_FIELDS}}
        row.update(embed_text=str(summary), kura_topic=summary.topic,
                   kura_metadata=json.dumps(summary.metadata, default=str))
        rows.append(row)
    table = pd.DataFrame(rows, columns=["chat_id", *SUMMARY_FIELDS, "embed_text", *KURA_SUMMARY_COLUMNS])
    for name in _SCORE_FIELDS:  # int64 like the reference's; nullable only if Kura left one out
        table[name] = table[name].astype("Int64" if table[name].isna().any() else "int64")
    return table


def _plain(value):
    if value is None or (not isinstance(value, (list, np.ndarray)) and pd.isna(value)):
        return None
    return value


def summaries_from_table(table: pd.DataFrame) -> list[ConversationSummary]:
    """Rebuild Kura's summaries; refuse if one would not embed to the stored embed_text."""
    missing = [c for c in KURA_SUMMARY_COLUMNS if c not in table.columns]
    if missing:
        raise StageError(f"summaries: no {missing} column(s): this table was not written by the kura backend")
    out = []
    for row in table.to_dict("records"):
        fields = {name: _plain(row[name]) for name in SUMMARY_FIELDS}
        for name in _LIST_FIELDS:
            if fields[name] is not None:
                fields[name] = [str(v) for v in fields[name]]
        for name in _SCORE_FIELDS:
            if fields[name] is not None:
                fields[name] = int(fields[name])
        summary = ConversationSummary(chat_id=row["chat_id"], topic=_plain(row["kura_topic"]),
                                      metadata=json.loads(row["kura_metadata"]), **fields)
        if str(summary) != row["embed_text"]:
            raise StageError(f"summaries: chat_id {row['chat_id']}: the stored summary does not rebuild to the "
                             f"text Kura embedded")
        out.append(summary)
    return out


# -- base clusters ----------------------------------------------------------------------------------
def clusters_to_tables(clusters: list[Cluster], chat_ids: list[str]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Kura's clusters as (clusters, assignments): ids 0..k-1 in Kura's order; Kura leaves no noise
    (its HDBSCAN method folds noise into one more named cluster), so no -1 rows."""
    cluster_of: dict[str, int] = {}
    for index, cluster in enumerate(clusters):
        for chat_id in cluster.chat_ids:
            if chat_id in cluster_of:
                raise StageError(f"clusters: Kura put chat_id {chat_id} in two clusters")
            cluster_of[chat_id] = index
    missing = [c for c in chat_ids if c not in cluster_of]
    if missing:
        raise StageError(f"clusters: Kura left {len(missing)} conversation(s) out of every cluster "
                         f"(e.g. {missing[:3]})")
    main = pd.DataFrame({
        "cluster_id": np.arange(len(clusters), dtype=np.int64),
        "name": [c.name for c in clusters],
        "description": [c.description for c in clusters],
        "size": np.array([len(c.chat_ids) for c in clusters], dtype=np.int64),
        "slug": [c.slug for c in clusters],  # Kura's, kept so meta-clustering gets its clusters back whole
    })
    assignments = pd.DataFrame({"chat_id": chat_ids,
                                "cluster_id": np.array([cluster_of[c] for c in chat_ids], dtype=np.int64)})
    return main, assignments


def clusters_from_tables(main: pd.DataFrame, assignments: pd.DataFrame) -> list[Cluster]:
    """Kura Clusters with ids "c<cluster_id>" (the reference's leaf ids), members in stored order."""
    members = assignments.groupby("cluster_id", sort=False)["chat_id"].apply(list).to_dict()
    slugs = main["slug"] if "slug" in main.columns else main["name"].map(_slug)
    return [Cluster(id=base_node_id(cid), name=str(name), description=str(description), slug=str(slug),
                    chat_ids=members.get(cid, []), parent_id=None)
            for cid, name, description, slug in zip(main["cluster_id"], main["name"], main["description"], slugs)
            if cid >= 0]


def _slug(name: str) -> str:
    return "_".join(re.findall(r"[a-z0-9]+", str(name).lower())[:3]) or "cluster"


# -- hierarchy ----------------------------------------------------------------------------------------
def hierarchy_table(clusters: list[Cluster], base_ids: set[str]) -> pd.DataFrame:
    """Kura's reduced cluster list as the reference's hierarchy table: the base clusters (`base_ids`,
    "c<id>") are the leaves; parents become "m<level>-<k>" with level = 1 + their children's level
    (Kura makes one level per round)."""
    by_id = {c.id: c for c in clusters}
    if len(by_id) != len(clusters):
        raise StageError("meta_clusters: Kura returned duplicate cluster ids")
    children: dict[str, list[str]] = {}
    for c in clusters:
        if c.parent_id is not None:
            if c.parent_id not in by_id:
                raise StageError(f"meta_clusters: Kura cluster {c.id} has unknown parent {c.parent_id}")
            children.setdefault(c.parent_id, []).append(c.id)
    leaf_ids = {c.id for c in clusters if c.id in base_ids}
    level: dict[str, int] = {}

    def level_of(node: str) -> int:
        if node not in level:
            kids = children.get(node, [])
            level[node] = 1 + max(level_of(k) for k in kids) if kids else 0
        return level[node]

    new_ids: dict[str, str] = {}
    per_level: dict[int, int] = {}
    for c in clusters:
        if c.id in leaf_ids:
            new_ids[c.id] = c.id
        else:
            lv = level_of(c.id)
            new_ids[c.id] = f"m{lv}-{per_level.get(lv, 0)}"
            per_level[lv] = per_level.get(lv, 0) + 1
    rows = [{
        "cluster_id": new_ids[c.id],
        "parent_id": new_ids[c.parent_id] if c.parent_id is not None else None,
        "level": level_of(c.id),
        "name": c.name,
        "description": c.description,
        "size": len(c.chat_ids),
        "is_leaf": c.id in leaf_ids,
        "base_cluster_id": int(c.id[1:]) if c.id in leaf_ids else None,
    } for c in clusters]
    table = pd.DataFrame(rows, columns=list(HIERARCHY_COLUMNS))
    table = table.astype({"level": "int64", "size": "int64", "is_leaf": "bool", "base_cluster_id": "Int64"})
    table["parent_id"] = table["parent_id"].astype(object).where(table["parent_id"].notna(), None)
    return table


# -- projections ----------------------------------------------------------------------------------------
def projection_table(projected: list[ProjectedCluster], assignments: pd.DataFrame) -> pd.DataFrame:
    """Kura projects clusters, not conversations: each conversation gets its base cluster's point."""
    points = {p.id: (p.x_coord, p.y_coord) for p in projected}
    ids = assignments["cluster_id"].to_numpy(dtype=np.int64)
    missing = sorted({int(c) for c in ids if base_node_id(c) not in points})
    if missing:
        raise StageError(f"projections: Kura returned no point for cluster(s) {missing[:5]}")
    xy = np.array([points[base_node_id(c)] for c in ids], dtype=np.float32).reshape(-1, 2)
    return pd.DataFrame({"chat_id": assignments["chat_id"].to_numpy(), "x": xy[:, 0], "y": xy[:, 1],
                         "cluster_id": ids})
