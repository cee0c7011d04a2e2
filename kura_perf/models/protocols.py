"""The small protocols every swappable model implements (BERTopic/Kura style: a stage takes a model)."""

from __future__ import annotations

from typing import Protocol, Sequence, runtime_checkable

import numpy as np

from kura_perf.corpus.types import Conversation

# Kura's ConversationSummary fields, filled by every summary model.
SUMMARY_FIELDS = (
    "summary",  # str
    "request",  # str
    "task",  # str
    "languages",  # list[str]
    "concerning_score",  # int 1-5
    "user_frustration",  # int 1-5
    "assistant_errors",  # list[str]
)


@runtime_checkable
class SummaryModel(Protocol):
    name: str

    def summarise(self, conversations: Sequence[Conversation]) -> list[dict]:
        """One dict per conversation, in order, with exactly SUMMARY_FIELDS."""


@runtime_checkable
class EmbeddingModel(Protocol):
    name: str
    dimension: int

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """float32 array of shape (len(texts), dimension), in order."""


@runtime_checkable
class ClusterNamer(Protocol):
    name: str

    def name_clusters(self, groups: Sequence[Sequence[str]]) -> list[tuple[str, str]]:
        """For each group of member texts, a (name, description) pair."""


@runtime_checkable
class ClusteringMethod(Protocol):
    name: str

    def fit_predict(self, vectors: np.ndarray) -> np.ndarray:
        """int labels, one per row; -1 means noise."""


@runtime_checkable
class ProjectionMethod(Protocol):
    name: str

    def fit_transform(self, vectors: np.ndarray) -> np.ndarray:
        """float32 array of shape (n, 2)."""
