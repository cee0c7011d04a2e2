"""Deterministic embeddings in which similar texts get similar vectors.

A text becomes a hashed bag of features (lower-cased words, weight 1, and their character
trigrams, weight 0.5, each hashed to a signed slot of a 1024-slot sketch); a fixed Gaussian random
projection per model (seeded by the model name) lifts the sketch to the model's native dimension,
and the result is L2-normalised. Random projection keeps cosine similarity approximately, so texts
sharing words stay close and clustering on these vectors remains meaningful. `dimensions` works as
for text-embedding-3 models: the native vector is truncated and re-normalised.
"""

from __future__ import annotations

import re
import zlib

import numpy as np

from kura_perf.models import cache

NATIVE_DIMENSIONS = {
    "text-embedding-3-small": 1536,
    "text-embedding-3-large": 3072,
    "text-embedding-ada-002": 1536,
}
DEFAULT_DIMENSION = 1536
SKETCH_SLOTS = 1024
_WORD = re.compile(r"\w+", re.UNICODE)


def native_dimension(model: str) -> int:
    return NATIVE_DIMENSIONS.get(model, DEFAULT_DIMENSION)


def supports_dimensions(model: str) -> bool:
    """Like OpenAI: only the -3 generation (and unknown models, e.g. a gateway's) accept `dimensions`."""
    return model != "text-embedding-ada-002"


def _features(text: str) -> list[tuple[str, float]]:
    words = [w.lower() for w in _WORD.findall(text)]
    out: list[tuple[str, float]] = [(w, 1.0) for w in words]
    for word in words:
        padded = f"^{word}$"
        out.extend((padded[i : i + 3], 0.5) for i in range(len(padded) - 2))
    return out or [(f"raw:{text}", 1.0)]


def sketch(text: str) -> np.ndarray:
    row = np.zeros(SKETCH_SLOTS, dtype=np.float64)
    features = _features(text)
    hashes = np.array([zlib.crc32(f.encode("utf-8")) for f, _ in features], dtype=np.uint64)
    weights = np.array([w for _, w in features], dtype=np.float64)
    signs = np.where((hashes >> np.uint64(16)) & np.uint64(1), 1.0, -1.0)
    np.add.at(row, (hashes % np.uint64(SKETCH_SLOTS)).astype(np.int64), signs * weights)
    return row


PROJECTION_KIND = "simulator-projection"  # the process cache's key: (this kind, (model, dimension))
PROJECTIONS_KEPT = 8  # model names come from clients: keep a few (12 MB each at 3072-d), not one per name


def _projection(model: str, dimension: int) -> np.ndarray:
    """The model's fixed sketch -> vector projection: its "weights", made once per process."""
    def make() -> np.ndarray:
        rng = np.random.default_rng(zlib.crc32(f"{model}:{dimension}".encode()))
        return rng.standard_normal((SKETCH_SLOTS, dimension)).astype(np.float32)

    return cache.shared(PROJECTION_KIND, (model, dimension), make, keep=PROJECTIONS_KEPT)


def embed_texts(texts: list[str], model: str, dimensions: int | None = None) -> np.ndarray:
    """float32 (len(texts), dimensions or native), rows L2-normalised."""
    native = native_dimension(model)
    if not texts:
        return np.zeros((0, dimensions or native), dtype=np.float32)
    sketches = np.stack([sketch(t) for t in texts]).astype(np.float32)
    vectors = sketches @ _projection(model, native)
    if dimensions is not None:
        vectors = vectors[:, :dimensions]
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return (vectors / np.where(norms == 0, 1.0, norms)).astype(np.float32)
