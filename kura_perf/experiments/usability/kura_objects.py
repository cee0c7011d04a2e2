"""Kura's own pydantic objects built from our synthetic corpus at a given size, deterministically.

Summaries come from the offline summary model (every ConversationSummary field filled, as Kura's
LLM would), with the metadata Kura adds (conversation_turns) and no embedding (Kura checkpoints
summaries before embedding them). Base clusters group conversations of one corpus topic in chunks
of ten (Kura's KmeansClusteringModel default, clusters_per_group=10); projected clusters are those
clusters with deterministic 2-D points (what Kura's dimensionality step checkpoints).
"""

from __future__ import annotations

import hashlib
from collections import defaultdict

from kura.types import Cluster, ConversationSummary
from kura.types import Conversation as KuraConversation
from kura.types.dimensionality import ProjectedCluster

from kura_perf.backends.kura_types import kura_conversation, kura_metadata
from kura_perf.corpus.generator import generate_conversations
from kura_perf.models.offline_summary import OfflineSummaryModel

CLUSTER_SIZE = 10  # Kura's KmeansClusteringModel(clusters_per_group=10)
KINDS = ("conversations", "summaries", "clusters", "projected_clusters")
MODEL_CLASS = {"conversations": KuraConversation, "summaries": ConversationSummary, "clusters": Cluster,
               "projected_clusters": ProjectedCluster}


def _point(key: str) -> tuple[float, float]:
    digest = hashlib.sha256(key.encode()).digest()
    return (int.from_bytes(digest[:4], "big") / 2**32 * 20 - 10, int.from_bytes(digest[4:8], "big") / 2**32 * 20 - 10)


def build_kura_objects(n: int, seed: int = 0) -> dict[str, list]:
    """{kind: [Kura objects]} for the first n conversations of the corpus."""
    conversations = generate_conversations(n, seed=seed)
    fields = OfflineSummaryModel().summarise(conversations)
    summaries = [ConversationSummary(chat_id=c.chat_id, metadata={**kura_metadata(c),
                                                                  "conversation_turns": len(c.messages)}, **f)
                 for c, f in zip(conversations, fields)]
    by_topic: dict[str, list[str]] = defaultdict(list)
    for c in conversations:
        by_topic[c.topic or "unknown"].append(c.chat_id)
    clusters = []
    for topic in sorted(by_topic):
        ids = by_topic[topic]
        for start in range(0, len(ids), CLUSTER_SIZE):
            k = start // CLUSTER_SIZE
            clusters.append(Cluster(id=f"{topic}-{k}", name=f"Help with {topic} ({k + 1})",
                                    description=f"Users asked for help with {topic}; the assistant explained "
                                                f"the steps and answered follow-up questions.",
                                    slug=topic.lower().replace(" ", "_")[:40], chat_ids=ids[start:start + CLUSTER_SIZE],
                                    parent_id=None))
    projected = [ProjectedCluster(**c.model_dump(exclude={"count"}), x_coord=_point(c.id)[0], y_coord=_point(c.id)[1],
                                  level=0) for c in clusters]
    return {"conversations": [kura_conversation(c) for c in conversations], "summaries": summaries,
            "clusters": clusters, "projected_clusters": projected}


def write_conversation_dump(n: int, path, seed: int = 0) -> int:
    """A Kura conversation dump (what Conversation.from_conversation_dump reads) of n conversations."""
    conversations = [kura_conversation(c) for c in generate_conversations(n, seed=seed)]
    KuraConversation.generate_conversation_dump(conversations, str(path))
    return len(conversations)
