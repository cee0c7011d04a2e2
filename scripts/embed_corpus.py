"""Scratch: embed a synthetic corpus once (offline summaries -> torch MiniLM), save vectors + truth + texts."""
import json
import sys
import time

import numpy as np

from kura_perf.corpus.generator import generate_conversations
from kura_perf.models.offline_summary import OfflineSummaryModel
from kura_perf.models.sentence_transformer import SentenceTransformerEmbedding
from kura_perf.stages.summaries import summarise

n, seed = int(sys.argv[1]), int(sys.argv[2])
topics = int(sys.argv[3]) if len(sys.argv) > 3 else None
tag = f"n{n}_s{seed}_t{topics or 48}"
convs = generate_conversations(n, seed=seed, topic_count=topics)
summ = summarise(convs, OfflineSummaryModel())
t = time.perf_counter()
vec = SentenceTransformerEmbedding(batch_size=32).embed(summ["embed_text"].tolist())
el = time.perf_counter() - t
np.save(f"/tmp/clustering-quality/{tag}.npy", vec)
json.dump({"truth": [c.topic for c in convs], "texts": summ["embed_text"].tolist(), "embed_s": el},
          open(f"/tmp/clustering-quality/{tag}.json", "w"))
print(tag, vec.shape, f"{el:.1f}s", f"{n/el:.1f}/s", flush=True)
