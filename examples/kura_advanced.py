"""A Kura pipeline with every model swapped and checkpoints on, so a second run resumes from disk.

Usage: python examples/kura_advanced.py CONVERSATIONS.json CHECKPOINT_DIR [EMBEDDING_MODEL]
Summaries and cluster names: a smaller chat model at 10 requests in flight. Embeddings: a local
sentence-transformers model (EMBEDDING_MODEL: a name or a folder, default all-MiniLM-L6-v2).
Clustering: HDBSCAN instead of k-means. Checkpoints: JSONL (Kura's Parquet checkpoints do not
reload under pandas 3: see `kura-perf checkpoints`).
"""
import asyncio
import sys

from kura.checkpoints import JSONLCheckpointManager
from kura.cluster import ClusterDescriptionModel, generate_base_clusters_from_conversation_summaries
from kura.dimensionality import HDBUMAP, reduce_dimensionality_from_clusters
from kura.embedding import SentenceTransformerEmbeddingModel
from kura.hdbscan import HDBSCANClusteringMethod
from kura.meta_cluster import MetaClusterModel, reduce_clusters_from_base_clusters
from kura.summarisation import SummaryModel, summarise_conversations
from kura.types import Conversation

CHAT_MODEL = "openai/gpt-4.1-mini"


async def main(path: str, checkpoint_dir: str, embedding_name: str) -> None:
    checkpoints = JSONLCheckpointManager(checkpoint_dir)
    embeddings = SentenceTransformerEmbeddingModel(model_name=embedding_name, model_batch_size=64)
    conversations = Conversation.from_conversation_dump(path)
    summaries = await summarise_conversations(
        conversations, model=SummaryModel(model=CHAT_MODEL, max_concurrent_requests=10),
        checkpoint_manager=checkpoints)
    clusters = await generate_base_clusters_from_conversation_summaries(
        summaries, embedding_model=embeddings, clustering_method=HDBSCANClusteringMethod(min_cluster_size=5),
        clustering_model=ClusterDescriptionModel(model=CHAT_MODEL, max_concurrent_requests=10),
        checkpoint_manager=checkpoints)
    meta_model = MetaClusterModel(model=CHAT_MODEL, max_concurrent_requests=10, embedding_model=embeddings,
                                  max_clusters=5)
    meta_clusters = await reduce_clusters_from_base_clusters(clusters, model=meta_model,
                                                             checkpoint_manager=checkpoints)
    projected = await reduce_dimensionality_from_clusters(
        meta_clusters, model=HDBUMAP(embedding_model=embeddings, n_neighbors=5), checkpoint_manager=checkpoints)
    for cluster in projected:
        print(f"{'  ' * cluster.level}{cluster.name} ({len(cluster.chat_ids)} conversations)")


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2], sys.argv[3] if len(sys.argv) > 3 else "all-MiniLM-L6-v2"))
