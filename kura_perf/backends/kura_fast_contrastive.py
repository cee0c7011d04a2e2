"""A drop-in for Kura 0.5.x's get_contrastive_examples with the same sampling and none of its O(n) list,
for profiles with `kura_fast_contrastive = true` only, and always labelled in the stage record.

Kura's ClusterDescriptionModel.generate_clusters calls get_contrastive_examples once per cluster, before its
first naming request. Each call builds the list of the summaries of ALL other clusters and draws
max_contrastive_examples of them with np.random.choice(replace=False): O(n) per cluster, O(n x k) in all;
at 100K conversations and k = 10,000 that is about 1.9 h of CPU on our 2-core box (`kura-perf kura-probe`
measures it), and the stages after it (Kura's meta-cluster loop, its UMAP) are never reached. With this
patch they can be measured at 100K: the same draw, uniform without replacement over the other clusters'
summaries, is made by picking positions in the concatenation of the other clusters without building it.

What changes is the cost of that one call and the random stream it draws from, nothing else: every other
line of Kura runs as released. A record made with it says so (extra.kura_patch); the profile's name says
"patched"; its clusters-stage time is NOT Kura's (kura-probe gives Kura's own).
"""

from __future__ import annotations

import contextlib
import threading

import numpy as np

PATCH_NOTE = ("kura.cluster.get_contrastive_examples replaced by kura_perf's equivalent draw (uniform without "
              "replacement over the other clusters' summaries, without building their O(n) list)")


class _Index:
    """The clusters of one cluster_id_to_summaries mapping laid end to end: where each cluster's block starts."""

    def __init__(self, groups: dict) -> None:
        self.ids = list(groups)
        self.flat = [s for cid in self.ids for s in groups[cid]]
        self.start, self.size, at = {}, {}, 0
        for cid in self.ids:
            self.start[cid], self.size[cid] = at, len(groups[cid])
            at += len(groups[cid])


class FastContrastive:
    """get_contrastive_examples' signature and result: max_contrastive_examples summaries of other clusters
    (all of them when there are no more than that), drawn uniformly without replacement."""

    def __init__(self, seed: int = 0) -> None:
        self._rng = np.random.default_rng(seed)
        self._lock = threading.Lock()
        self._index: tuple[int, _Index] | None = None

    def _index_of(self, groups: dict) -> _Index:
        with self._lock:
            if self._index is None or self._index[0] != id(groups):
                self._index = (id(groups), _Index(groups))
            return self._index[1]

    def __call__(self, cluster_id, cluster_id_to_summaries: dict, max_contrastive_examples: int = 10) -> list:
        index = self._index_of(cluster_id_to_summaries)
        start, size = index.start.get(cluster_id, 0), index.size.get(cluster_id, 0)
        others = len(index.flat) - size
        if others <= max_contrastive_examples:
            return index.flat[:start] + index.flat[start + size:]
        with self._lock:
            picks = self._rng.choice(others, size=max_contrastive_examples, replace=False)
        return [index.flat[p if p < start else p + size] for p in picks]


@contextlib.contextmanager
def fast_contrastive_examples(enabled: bool, seed: int = 0):
    """While active, Kura's module-level get_contrastive_examples is the fast draw (when enabled); restored
    after, also on failure. Yields the note for the record, or None when not enabled."""
    if not enabled:
        yield None
        return
    import kura.cluster

    original = kura.cluster.get_contrastive_examples
    kura.cluster.get_contrastive_examples = FastContrastive(seed)
    try:
        yield PATCH_NOTE
    finally:
        kura.cluster.get_contrastive_examples = original
