"""The smallest Kura pipeline, with Kura's defaults: summaries, clusters, meta clusters, a 2-D map.

Usage: python examples/kura_basic.py CONVERSATIONS.json
(a Kura conversation dump: Conversation.generate_conversation_dump writes one). Kura's models call
OpenAI; set OPENAI_API_KEY, and OPENAI_BASE_URL to use any compatible server.
"""
import asyncio
import sys

from kura.cluster import generate_base_clusters_from_conversation_summaries
from kura.dimensionality import HDBUMAP, reduce_dimensionality_from_clusters
from kura.meta_cluster import MetaClusterModel, reduce_clusters_from_base_clusters
from kura.summarisation import SummaryModel, summarise_conversations
from kura.types import Conversation


async def main(path: str) -> None:
    conversations = Conversation.from_conversation_dump(path)
    summaries = await summarise_conversations(conversations, model=SummaryModel())
    clusters = await generate_base_clusters_from_conversation_summaries(summaries)
    meta_clusters = await reduce_clusters_from_base_clusters(clusters, model=MetaClusterModel())
    projected = await reduce_dimensionality_from_clusters(meta_clusters, model=HDBUMAP())
    for cluster in projected:
        print(f"{cluster.name} ({len(cluster.chat_ids)} conversations)")


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1]))
