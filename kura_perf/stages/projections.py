"""Stage 5: embeddings -> 2-D coordinates per conversation, tagged with its base cluster for plotting."""

from __future__ import annotations

import numpy as np
import pandas as pd

from kura_perf.errors import StageError
from kura_perf.models.protocols import ProjectionMethod


def project(embeddings: np.ndarray, assignments: pd.DataFrame, method: ProjectionMethod) -> pd.DataFrame:
    """Columns chat_id, x, y (float32), cluster_id; rows in the order of `assignments`."""
    n = len(assignments)
    if len(embeddings) != n:
        raise StageError(f"projections: {len(embeddings)} embeddings for {n} cluster assignments")
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
