"""Stage 5: embeddings -> 2-D coordinates per conversation, tagged with its base cluster for plotting."""

from __future__ import annotations

import numpy as np
import pandas as pd

from kura_perf.errors import StageError
from kura_perf.models.protocols import ProjectionMethod, ReusesKnnGraph


def project(embeddings: np.ndarray, assignments: pd.DataFrame, method: ProjectionMethod, knn=None) -> pd.DataFrame:
    """Columns chat_id, x, y (float32), cluster_id; rows in the order of `assignments`.

    `knn`: the embeddings' k-NN graph if an earlier stage built one, for methods that can reuse it
    (ReusesKnnGraph).
    """
    n = len(assignments)
    if len(embeddings) != n:
        raise StageError(f"projections: {len(embeddings)} embeddings for {n} cluster assignments")
    if knn is not None and isinstance(method, ReusesKnnGraph):
        coordinates = np.asarray(method.fit_transform(embeddings, knn=knn), dtype=np.float32)
    else:
        coordinates = np.asarray(method.fit_transform(embeddings), dtype=np.float32)
    if coordinates.shape != (n, 2):
        raise StageError(f"projections: method '{method.name}' returned shape {coordinates.shape}, expected {(n, 2)}")
    if not np.isfinite(coordinates).all():
        bad = int(np.flatnonzero(~np.isfinite(coordinates).all(axis=1))[0])
        raise StageError(
            f"projections: method '{method.name}' returned non-finite coordinates "
            f"(first at chat_id {assignments['chat_id'].iloc[bad]})"
        )
    return pd.DataFrame(
        {
            "chat_id": assignments["chat_id"].to_numpy(),
            "x": coordinates[:, 0],
            "y": coordinates[:, 1],
            "cluster_id": assignments["cluster_id"].to_numpy(dtype=np.int64),
        }
    )
