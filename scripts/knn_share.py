"""Does sharing one k-NN graph between the 5-d clustering reduction and the 2-d projection pay?

    python scripts/knn_share.py /tmp/clustering-quality/n10000_s0_t48.npy

Times, in one process after a warm-up fit (so numba compiles are not counted): the k-NN graph alone,
the 2-d projection computing its own graph, and the 2-d projection given the shared graph.
"""

import sys
import time

import numpy as np

from kura_perf.models.clustering import UMAPHDBSCANMethod
from kura_perf.models.knn import knn_graph
from kura_perf.models.projection import UMAPProjection

vectors = np.load(sys.argv[1])
UMAPProjection(random_state=0).fit_transform(vectors[:600])  # warm-up: compile outside the timings
knn_graph(vectors[:5000], 15)


def timed(label, fn):
    t = time.perf_counter()
    out = fn()
    print(f"{label}: {time.perf_counter() - t:.1f} s", flush=True)
    return out


graph = timed("knn graph (n_neighbors 15, cosine)", lambda: knn_graph(vectors, 15, random_state=0))
timed("5-d reduction given the graph", lambda: UMAPHDBSCANMethod(random_state=0).reduce(vectors, graph))
for round_ in (1, 2):  # alternating, twice: the box is shared, one pair of timings is noise
    own = timed(f"[{round_}] 2-d projection, own graph", lambda: UMAPProjection(random_state=0).fit_transform(vectors))
    shared = timed(f"[{round_}] 2-d projection, shared graph",
                   lambda: UMAPProjection(random_state=0).fit_transform(vectors, knn=graph))
print("max |own - shared| coordinate difference:", float(np.abs(own - shared).max()))
