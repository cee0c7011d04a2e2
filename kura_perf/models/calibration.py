"""Model-only throughput, measured in the stage's own process right before the stage.

The embeddings record carries the bare backend's texts/s on a small fixed sample of the same texts,
so "stage vs model" is a ratio from one run on one (possibly busy) machine: a stage far slower than
its own model points at the stage's overhead, not at the machine.
"""

from __future__ import annotations

import time
from typing import Sequence

import numpy as np

from kura_perf.models.protocols import EncodesBare

# 128 texts: 4 batches of 32, a few seconds at torch speed on 2 cores; far fewer makes the figure noisy.
SAMPLE_N = 128
WARMUP_N = 8


def calibration_sample(texts: Sequence[str], n: int = SAMPLE_N) -> list[str]:
    """Up to n texts spread evenly over the input (deterministic: the same texts every run of a partition)."""
    if len(texts) <= n:
        return list(texts)
    index = np.linspace(0, len(texts) - 1, n).round().astype(int)
    return [texts[i] for i in index]


def model_throughput(model, texts: Sequence[str], n: int = SAMPLE_N) -> dict:
    """{'model_items_per_s', 'model_sample_n'} for model.bare_encode on the sample, after a short untimed
    warm-up (first-call allocations); empty when the model has no bare backend (EncodesBare: not API
    models) or no texts."""
    # Longest first, as the stage (and sentence-transformers within one call) batches: the two
    # figures then differ by the stage's own overhead, not by how much padding the batches carry.
    sample = sorted(calibration_sample(texts, n), key=len, reverse=True)
    if not isinstance(model, EncodesBare) or not sample:
        return {}
    model.bare_encode(sample[:WARMUP_N])
    t0 = time.perf_counter()
    model.bare_encode(sample)
    elapsed = time.perf_counter() - t0
    return {"model_items_per_s": len(sample) / elapsed if elapsed > 0 else None, "model_sample_n": len(sample)}
