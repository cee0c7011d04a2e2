"""Clustering quality per embedding backend: how README "Embedding backends" chose the default.

    PYTHONPATH=. python scripts/embedding_backend_quality.py --n 1000 --cache /tmp/mc --backends torch onnx onnx-int8

Synthetic conversations (seed 0) -> offline summaries' embed_text -> each backend's vectors ->
UMAP(5-d, cosine, n_neighbors 15, min_dist 0) + HDBSCAN(min_cluster_size 10) -> ARI against the
true topics, for 3 UMAP seeds; plus each backend's cosine to torch. A measurement tool, not a test.
"""

from __future__ import annotations

import argparse
import time

import numpy as np


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0, help="corpus seed")
    parser.add_argument("--cache", required=True, help="model cache folder (ONNX exports)")
    parser.add_argument("--backends", nargs="+", default=["torch", "onnx", "onnx-int8"])
    parser.add_argument("--batch-size", type=int, default=32)
    args = parser.parse_args()

    import hdbscan
    import umap
    from sklearn.metrics import adjusted_rand_score

    from kura_perf.backends.model_factory import ModelFactory
    from kura_perf.corpus import generate_conversations
    from kura_perf.models.offline_summary import OfflineSummaryModel
    from kura_perf.profiles import get_profile
    from kura_perf.settings.run import RunSettings
    from kura_perf.stages.summaries import summarise

    conversations = generate_conversations(args.n, seed=args.seed)
    texts = summarise(conversations, OfflineSummaryModel())["embed_text"].tolist()
    truth = [c.topic for c in conversations]
    vectors = {}
    for backend in args.backends:
        profile = get_profile("offline").model_copy(update={"embedding_backend": backend,
                                                            "batch_size": args.batch_size})
        model = ModelFactory(profile, RunSettings.from_env(model_cache=args.cache)).embedding_model()
        model.prepare()
        t0 = time.perf_counter()
        vectors[backend] = model.embed(texts)
        print(f"{backend}: {args.n / (time.perf_counter() - t0):.1f} texts/s", flush=True)
    for backend, v in vectors.items():
        if "torch" in vectors and backend != "torch":
            cosine = (v * vectors["torch"]).sum(axis=1)
            print(f"{backend}: cosine to torch min {cosine.min():.4f} mean {cosine.mean():.4f}")
        scores = []
        for seed in (0, 1, 2):
            reduced = umap.UMAP(n_components=5, metric="cosine", n_neighbors=15, min_dist=0.0,
                                random_state=seed).fit_transform(v)
            labels = hdbscan.HDBSCAN(min_cluster_size=10).fit_predict(reduced)
            scores.append(adjusted_rand_score(truth, labels))
        print(f"{backend}: ARI {', '.join(f'{s:.3f}' for s in scores)} -> mean {np.mean(scores):.3f}", flush=True)


if __name__ == "__main__":
    main()
