"""Quality per hierarchy level for several profiles on saved embeddings, through the product's own stage
functions (cluster_summaries, build_hierarchy, level_quality), so embeddings are computed only once.

    python scripts/levels_compare.py /tmp/clustering-quality n1000_s0_t48 offline hdbscan-raw kmeans
"""

import json
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

from kura_perf.backends.model_factory import ModelFactory
from kura_perf.settings.run import RunSettings
from kura_perf.stages.clusters import cluster_summaries
from kura_perf.stages.level_quality import labels_per_level, level_quality
from kura_perf.stages.meta_clusters import build_hierarchy

folder, tag, *profiles = sys.argv[1:]
vectors = np.load(Path(folder) / f"{tag}.npy")
meta = json.load(open(Path(folder) / f"{tag}.json"))
truth, texts = meta["truth"], meta["texts"]
summaries = pd.DataFrame({"chat_id": [f"c{i}" for i in range(len(texts))], "embed_text": texts})
settings = RunSettings.from_env()  # this script is a process entry: its edge
for name in profiles:
    profile = settings.profile(name)
    models = ModelFactory(profile, settings)
    t = time.perf_counter()
    method = models.clustering_method(len(texts))
    base = cluster_summaries(summaries, vectors, method, models.namer(), truth=truth, seed=profile.seed)
    cluster_s = time.perf_counter() - t
    hierarchy = build_hierarchy(base.clusters, models.embedding_model(), models.namer(),
                                max_clusters=profile.meta_max_clusters, max_iterations=profile.meta_max_iterations,
                                seed=profile.seed)
    rows = level_quality(labels_per_level(hierarchy.table, base.assignments["cluster_id"].to_numpy()), vectors, truth,
                         seed=profile.seed)
    for row in rows:
        print(json.dumps({"tag": tag, "profile": name, "cluster_s": round(cluster_s, 1),
                          **{k: (round(v, 3) if isinstance(v, float) else v) for k, v in row.items()}}), flush=True)
    top = base.clusters.sort_values("size", ascending=False).head(8)
    print(json.dumps({"tag": tag, "profile": name, "names": top["name"].tolist()}), flush=True)
