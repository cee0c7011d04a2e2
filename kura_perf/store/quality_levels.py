"""Per-level clustering quality of a finished clusters or meta_clusters stage, from its stored outputs.

Computed by the runner after the metered block: scoring against ground truth is evaluation, not part
of the pipeline's cost (Kura computes none of it), and reading it from the stored outputs makes it the
same for every backend. The rows go to the store's `quality_levels` table beside the stage record
(same hand-off, same hook), and into the asset's metadata.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd
import pyarrow.parquet as pq

from kura_perf.files import outputs
from kura_perf.stages.level_quality import labels_per_level, level_quality
from kura_perf.stages.truth import DEFAULT_TRUTH_LEVELS, truths_for
from kura_perf.store.record import StageRecord

LEVEL_STAGES = ("clusters", "meta_clusters")
SILHOUETTE_SAMPLE = 5000
# Columns copied from the stage record onto each level row, so rows compare like stage records do.
RECORD_COLUMNS = ("record_id", "run_id", "stage", "backend", "profile", "profile_hash", "scale", "scale_n",
                  "finished_at", "code_version", "package_versions", "kura_version", "host_fingerprint",
                  "host_cpu", "host_cores", "host_ram_gb", "host_os")


def _truths(folder: Path, chat_ids: list[str], truth_levels: Sequence[str]) -> dict[str, list | None] | None:
    """{truth level: values in `chat_ids` order, or None when any conversation lacks it}, coarse to fine;
    None when the conversations are not stored."""
    path = folder / "conversations.parquet"
    if not outputs.has_stage(folder, "conversations") or not path.is_file():
        return None
    present = set(pq.read_schema(path).names)
    table = pq.read_table(path, columns=[c for c in ("chat_id", "topic", "metadata") if c in present]).to_pandas()
    return truths_for(table, chat_ids, truth_levels)


def evaluate_levels(folder: Path, stage: str, seed: int = 0, sample_size: int = SILHOUETTE_SAMPLE,
                    truth_levels: Sequence[str] = DEFAULT_TRUTH_LEVELS) -> list[dict]:
    """Level rows (see level_quality.LEVEL_KEYS) for the stored output of `stage` in `folder`, one per
    hierarchy level and truth level (the profile's truth_levels, coarse to fine).

    clusters: level 0 only (is_topic_level then says whether the base clusters are the topic level
    among the levels known so far); meta_clusters: level 0 and every meta level.
    """
    if stage not in LEVEL_STAGES:
        return []
    clusters = outputs.read_stage(folder, "clusters")
    assignments = clusters.tables["assignments"]
    chat_ids = assignments["chat_id"].tolist()
    embeddings = None
    if outputs.has_stage(folder, "embeddings"):
        stored = outputs.read_stage(folder, "embeddings")
        ids = stored.tables["ids"]["chat_id"].tolist()
        vectors = stored.arrays["main"]
        if ids == chat_ids:
            embeddings = vectors
        else:  # align by chat_id (a backend may store its rows in another order)
            embeddings = vectors[pd.Index(ids).get_indexer(chat_ids)]
    base = assignments["cluster_id"].to_numpy(dtype=np.int64)
    if stage == "meta_clusters":
        levels = labels_per_level(outputs.read_stage(folder, "meta_clusters").tables["main"], base)
    else:
        levels = {0: base}
    truths = _truths(folder, chat_ids, truth_levels)
    if truths is None:
        truths = dict.fromkeys(truth_levels)
    return level_quality(levels, embeddings, truths, sample_size=sample_size, seed=seed)


def timed_levels(folder: Path, stage: str, seed: int,
                 truth_levels: Sequence[str] = DEFAULT_TRUTH_LEVELS) -> tuple[list[dict], float]:
    start = time.perf_counter()
    rows = evaluate_levels(folder, stage, seed, truth_levels=truth_levels)
    return rows, time.perf_counter() - start


def store_rows(record: StageRecord, levels: list[dict]) -> list[dict]:
    """quality_levels table rows: the stage record's identity and comparability columns + each level."""
    shared = {key: getattr(record, key) for key in RECORD_COLUMNS}
    return [{**shared, **{k: v for k, v in level.items()}} for level in levels]
