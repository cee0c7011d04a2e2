"""The small protocols every swappable model implements (BERTopic/Kura style: a stage takes a model),
and the optional abilities some of them have (at the end)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Callable, ClassVar, Protocol, Sequence, runtime_checkable

import numpy as np

if TYPE_CHECKING:  # types only: importing the corpus package here would load its topic bank with every model
    from kura_perf.corpus.types import Conversation
    from kura_perf.meter.api import ApiCounters
    from kura_perf.models.knn import KnnGraph

Progress = Callable[[int, int], None]  # progress(done, total)

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


# -- optional abilities ---------------------------------------------------------------------------
# A model that has one says so by naming the protocol among its bases; the stages and the backend ask
# with isinstance, never by inspecting signatures. Each protocol has a member no model without the
# ability has: a marker (ClassVar, set by inheriting the protocol) where the method itself is shared
# by all models of the kind (every embedder has embed), else the ability's own attribute or method.


@runtime_checkable
class ReportsProgress(Protocol):
    """An EmbeddingModel whose embed(texts, progress=...) calls progress(done, total) as batches finish:
    a long embeddings stage then logs progress, and one stopped midway gets a projection. Without it the
    stage reports the whole input done once the model returns."""

    reports_progress: ClassVar[bool] = True

    def embed(self, texts: Sequence[str], progress: Progress | None = None) -> np.ndarray: ...


def adaptive_input_chunk(inflight_cap: int) -> int:
    """Conversations an adaptive API summary model takes per call (its `input_chunk`): enough that the
    ends of chunks (each waits for its slowest answer) are rare at the highest in-flight bound, few enough
    that a large partition's requests are not all waiting as tasks at once."""
    return max(10_000, 20 * inflight_cap)


@runtime_checkable
class SummarisesWithProgress(Protocol):
    """A SummaryModel that takes up to `input_chunk` conversations per call and calls progress(done, total)
    itself as answers arrive. Why: the stage otherwise hands it batch_size conversations at a time, each
    batch waiting for its slowest answer, which caps an adaptive API client's requests in flight at the
    batch size however high the limit. The stage uses it only while `summarises_with_progress` is true."""

    summarises_with_progress: bool
    input_chunk: int

    def summarise(self, conversations: Sequence[Conversation], progress: Progress | None = None) -> list[dict]: ...


@runtime_checkable
class UsesClusterSizes(Protocol):
    """A ClusterNamer that takes the true member counts (`sizes`) beside the groups, which may be
    samples: bigger clusters choose their names first."""

    uses_cluster_sizes: ClassVar[bool] = True

    def name_clusters(self, groups: Sequence[Sequence[str]],
                      sizes: Sequence[int] | None = None) -> list[tuple[str, str]]: ...


@runtime_checkable
class ReusesKnnGraph(Protocol):
    """A ProjectionMethod that reuses the k-NN graph an earlier stage built (fit_transform(vectors,
    knn=...)) when it is the graph it would build; `reused_knn` says whether the last fit did."""

    reused_knn: bool

    def fit_transform(self, vectors: np.ndarray, knn: KnnGraph | None = None) -> np.ndarray: ...


@runtime_checkable
class BuildsKnnGraph(Protocol):
    """A ClusteringMethod that keeps the k-NN graph of its last fit's input (`knn`, None when it built
    none), which the clusters stage stores for the projection to reuse."""

    knn: KnnGraph | None


@runtime_checkable
class ReportsFit(Protocol):
    """A ClusteringMethod that decides something from the data on each fit (umap-hdbscan choosing its
    min_cluster_size); fit_report() says what, for the clusters stage's record."""

    def fit_report(self) -> dict: ...


@runtime_checkable
class PreparesModel(Protocol):
    """A model with one-time set-up (loading weights, making or checking an ONNX export) that can run
    before the stage is timed; returns what it did and measured, for the record's extra."""

    def prepare(self) -> dict: ...


@runtime_checkable
class EncodesBare(Protocol):
    """An embedding model whose bare backend (no batching, ordering or progress of ours) can be timed
    alone: the record's model-only texts/s beside the stage's."""

    def bare_encode(self, texts: Sequence[str]) -> np.ndarray: ...


@runtime_checkable
class CountsApiCalls(Protocol):
    """A model that calls an API and counts what it did (calls, errors, 429s, retries, tokens, cost)."""

    @property
    def counters(self) -> ApiCounters: ...


@runtime_checkable
class SelectsSummaries(Protocol):
    """A SummaryModel whose summaries exist already (a Kura summaries checkpoint): the stage calls
    select(chat_ids) once with the partition's conversations, in order, and summarises with the model
    it returns (its `read_info` goes into the record's extra), so the source is read once per stage and
    a conversation with no summary is refused before any row is made."""

    def select(self, chat_ids: Sequence[str]) -> SummaryModel: ...
