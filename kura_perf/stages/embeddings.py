"""Stage 2: summaries' embed_text -> a float32 matrix, one row per summary, checked before it is stored."""

from __future__ import annotations

import numpy as np
import pandas as pd

from kura_perf.errors import StageError
from kura_perf.models.protocols import EmbeddingModel, Progress, ReportsProgress


def embed_summaries(
    summaries: pd.DataFrame, model: EmbeddingModel, progress: Progress | None = None
) -> np.ndarray:
    """Embed `summaries['embed_text']` in order; progress(done, total) as batches finish when the model
    declares it reports progress (ReportsProgress), else once at the end."""
    if "embed_text" not in summaries.columns:
        raise StageError("embeddings: the summaries table has no 'embed_text' column")
    texts = summaries["embed_text"].tolist()
    if progress is not None and isinstance(model, ReportsProgress):
        vectors = model.embed(texts, progress=progress)
    else:
        vectors = model.embed(texts)
        if progress is not None:
            progress(len(texts), len(texts))
    row_names = summaries["chat_id"].tolist() if "chat_id" in summaries.columns else None
    return check_embeddings(vectors, len(texts), model.dimension, model.name, row_names)


def check_embeddings(
    vectors: object,
    expected_rows: int,
    dimension: int,
    model_name: str,
    row_names: list[str] | None = None,
) -> np.ndarray:
    """float32 (expected_rows, dimension) with only finite values, or a StageError saying what is wrong."""
    matrix = np.asarray(vectors, dtype=np.float32)
    expected = (expected_rows, dimension)
    if matrix.shape != expected and not (expected_rows == 0 and matrix.size == 0):
        raise StageError(f"embeddings: model '{model_name}' returned shape {matrix.shape}, expected {expected}")
    if expected_rows == 0:
        return np.zeros(expected, dtype=np.float32)
    finite = np.isfinite(matrix).all(axis=1)
    if not finite.all():
        bad = np.flatnonzero(~finite)
        first = f"chat_id {row_names[bad[0]]}" if row_names is not None else f"row {bad[0]}"
        raise StageError(
            f"embeddings: model '{model_name}' returned non-finite values in {len(bad)} rows (first: {first})"
        )
    return matrix
