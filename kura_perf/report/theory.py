"""Memory against theory (proposal §3.1): the bytes each stage must hold at its peak, from N, d and k.

The proposal names five hotspots: the embedding matrix (N × d × 4 bytes), the numpy conversion for
clustering, HDBSCAN's own memory, the meta-clusters' re-embedding, and serialization buffers. This
module computes them per stage as a pure function, so the report can put each stage's measured peak
growth (peak RSS − RSS at the stage's start) beside them and say where and why the two differ.

The figures are lower bounds of what has to be resident, not a model of Python's allocator: Python
objects, model weights and library workspaces come on top, and memory an earlier stage freed but the
allocator kept can absorb some growth. `explain` turns the gap into the likely reason.
"""

from __future__ import annotations

from dataclasses import dataclass

FLOAT32, FLOAT64, INT64 = 4, 8, 8
DEFAULT_TEXT_BYTES = 2_700  # UTF-8 text per synthetic conversation (measured: raw_text_bytes / N at 1K)
SUMMARY_BYTES = 900  # one summary row's text fields and embed_text
NAME_BYTES = 300  # a cluster's name and description
KNN_NEIGHBOURS = 15  # UMAP's n_neighbors (the reference reduces before HDBSCAN; projections use UMAP)
MIN_SAMPLES = 10  # HDBSCAN's min_samples (min_cluster_size 10 by default)
PROJECTION_DIM = 2


@dataclass(frozen=True)
class Hotspot:
    """One allocation the stage cannot avoid, with the formula it was computed from."""

    name: str
    bytes: int
    formula: str


def theoretical_bytes(stage: str, n: int, d: int, k: int, *, text_bytes: float = DEFAULT_TEXT_BYTES,
                      batch: int | None = None, clustering: str = "hdbscan") -> list[Hotspot]:
    """The §3.1 hotspots of `stage` for n conversations, d-dimensional embeddings, k base clusters.

    batch: the stream batch size (profile.stream_batch_size) when the stage ran streamed; the row-wise
    stages then hold one batch, not the partition. clustering: the profile's method (k-means needs no
    k-NN graph; HDBSCAN and the UMAP reduction do).
    """
    if n < 0 or d < 1 or k < 0:
        raise ValueError(f"theoretical_bytes: need n >= 0, d >= 1, k >= 0 (got n={n}, d={d}, k={k})")
    rows = min(n, batch) if batch else n  # what a row-wise stage holds at once
    rows_name = "B" if batch and batch < n else "N"
    text = int(text_bytes)
    if stage == "conversations":
        return [Hotspot("conversation text in Python objects", rows * text, f"{rows_name} × text"),
                Hotspot("serialization buffer (Arrow copy for Parquet)", rows * text, f"{rows_name} × text")]
    if stage == "summaries":
        return [Hotspot("conversations read back (Arrow + Python objects)", 2 * rows * text, f"2 × {rows_name} × text"),
                Hotspot("summary rows + serialization buffer", 2 * rows * SUMMARY_BYTES,
                        f"2 × {rows_name} × {SUMMARY_BYTES} B")]
    if stage == "embeddings":
        return [Hotspot("embedding matrix (embed_summaries peak)", rows * d * FLOAT32, f"{rows_name} × d × 4"),
                Hotspot("summaries read back (embed_text)", rows * SUMMARY_BYTES, f"{rows_name} × {SUMMARY_BYTES} B")]
    if stage == "clusters":
        spots = [Hotspot("embedding matrix loaded", n * d * FLOAT32, "N × d × 4"),
                 Hotspot("numpy conversion for clustering (float64 copy)", n * d * FLOAT64, "N × d × 8")]
        if clustering == "kmeans":
            spots.append(Hotspot("k-means centres and labels", k * d * FLOAT64 + n * INT64, "k × d × 8 + N × 8"))
        else:
            spots.append(Hotspot("HDBSCAN core distances: k-NN distances + indices",
                                 n * MIN_SAMPLES * (FLOAT64 + INT64), f"N × {MIN_SAMPLES} × 16"))
            spots.append(Hotspot("HDBSCAN minimum spanning tree", (n - 1) * 3 * FLOAT64 if n else 0, "(N − 1) × 3 × 8"))
        return spots
    if stage == "meta_clusters":
        return [Hotspot("meta-cluster re-embedding of cluster names", k * d * FLOAT32, "k × d × 4"),
                Hotspot("cluster names and descriptions", k * NAME_BYTES, f"k × {NAME_BYTES} B")]
    if stage == "projections":
        return [Hotspot("embedding matrix loaded", n * d * FLOAT32, "N × d × 4"),
                Hotspot("UMAP k-NN graph (distances + indices)", n * KNN_NEIGHBOURS * (FLOAT32 + INT64),
                        f"N × {KNN_NEIGHBOURS} × 12"),
                Hotspot("2-D coordinates", n * PROJECTION_DIM * FLOAT32, "N × 2 × 4")]
    raise ValueError(f"theoretical_bytes: unknown stage '{stage}'")


def total_bytes(hotspots: list[Hotspot]) -> int:
    return sum(h.bytes for h in hotspots)


# Ratios of measured growth to theory outside this band get an explanation.
CLOSE_LOW, CLOSE_HIGH = 0.5, 2.0
FIXED_COSTS = {
    "embeddings": "loading the embedding model (weights and torch's workspaces, a few hundred MB, the same at any N)",
    "meta_clusters": "loading the embedding model again if this process had not (fixed, not per cluster)",
    "clusters": "UMAP/numba's compiled code and thread workspaces (fixed), and the clustering library's copies",
    "projections": "UMAP/numba's compiled code and NN-descent's working arrays (fixed plus per point)",
}


def explain(stage: str, measured_mb: float | None, theory_mb: float, streamed: bool = False) -> str:
    """Where the measured peak growth and the theory differ, and the likely reason."""
    if measured_mb is None:
        return "no peak measured"
    if theory_mb <= 0:
        return "no theoretical allocation"
    ratio = measured_mb / theory_mb
    if CLOSE_LOW <= ratio <= CLOSE_HIGH:
        return "close to theory: the hotspots above are what this stage holds"
    if ratio > CLOSE_HIGH:
        why = FIXED_COSTS.get(stage, "Python object overhead (a str or dict costs several times its bytes)")
        if stage in ("conversations", "summaries"):
            why = ("the batch is small, so one-off costs (first imports of pandas/pyarrow, Arrow's allocator pool) "
                   "outweigh it" if streamed else
                   "Python object overhead: each message is a str plus a dict, several times its UTF-8 bytes")
        scale_note = (" At small N the fixed part dominates; the ratio falls as N grows." if stage in FIXED_COSTS
                      else "")
        return f"{ratio:.1f}× theory: {why}.{scale_note}"
    if streamed:
        return (f"{ratio:.2f}× theory: streamed, and the batch's buffers fit in memory the allocator already held "
                "(RSS at start includes pages freed by earlier batches or stages)")
    return (f"{ratio:.2f}× theory: memory freed by an earlier stage in this process was reused (RSS at start "
            "already counts it), or the library works in chunks rather than holding the whole array")
