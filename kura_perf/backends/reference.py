"""The reference backend: our stage functions over models chosen by the profile."""

from __future__ import annotations

import json
from typing import Sequence

import numpy as np
import pandas as pd

from kura_perf.backends.conversion import conversations_from_table, conversations_to_table
from kura_perf.backends.model_factory import ModelFactory
from kura_perf.backends.protocols import Prepares, ReportsApiCounters
from kura_perf.corpus import iter_conversations, load_conversations
from kura_perf.datasets import check_scale_fits, resolve_data_file
from kura_perf.errors import StageError
from kura_perf.files.outputs import StageData
from kura_perf.meter.api import ApiCounters
from kura_perf.models.calibration import model_throughput
from kura_perf.models.knn import KnnGraph
from kura_perf.models.protocols import (
    BuildsKnnGraph,
    CountsApiCalls,
    PreparesModel,
    ReportsFit,
    ReusesKnnGraph,
    SelectsSummaries,
)
from kura_perf.profiles import Profile
from kura_perf.settings.run import RunSettings
from kura_perf.stages.base import StageInputs, StageResult
from kura_perf.stages.clusters import cluster_summaries
from kura_perf.stages.embeddings import embed_summaries
from kura_perf.stages.meta_clusters import build_hierarchy
from kura_perf.stages.projections import project
from kura_perf.stages.summaries import summarise
from kura_perf.stages.truth import DEFAULT_TRUTH_LEVELS, finest_truth


class ReferenceBackend(Prepares, ReportsApiCounters):
    name = "reference"

    def __init__(self, profile: Profile, settings: RunSettings, onnx_min_cosine: float | None = None):
        self.profile = profile
        # Required (the ONNX backends need the run's model cache for their checked exports): a library
        # user or a test builds them at its edge, with RunSettings.from_env() or RunSettings(paths=...).
        self.settings = settings
        self.models = ModelFactory(profile, self.settings, onnx_min_cosine=onnx_min_cosine)
        self._setup: dict[str, dict] = {}  # per stage: what prepare() did and measured

    def prepare(self, stage: str, read_upstream) -> None:
        """Before the stage is metered: load the embedding model or check its ONNX export (a one-time
        cost, reported in the record's extra), then time the bare model on a sample of the stage's texts."""
        if stage not in ("embeddings", "meta_clusters") or self.profile.embedding_backend == "api":
            return
        if stage == "meta_clusters" and self.profile.meta_grouping == "centroids":
            return  # groups by the clusters' stored centroids: no model to load

        model = self.models.embedding_model()
        setup = dict(model.prepare()) if isinstance(model, PreparesModel) else {}
        if stage == "embeddings":
            summaries = read_upstream("summaries").tables["main"]
            if "embed_text" in summaries.columns:
                setup.update(model_throughput(model, summaries["embed_text"].tolist()))
        self._setup[stage] = setup

    def close(self) -> None:
        self.models.close()

    def api_counters(self) -> ApiCounters | None:
        """Everything this backend's API models counted so far (used when a stage fails midway)."""
        return _merge(*(_counters(m) for m in self.models.built()))

    def run(self, stage: str, inputs: StageInputs) -> StageResult:
        return getattr(self, f"_{stage}")(inputs)

    # -- stages ---------------------------------------------------------------------------------
    def _conversations(self, inputs: StageInputs) -> StageResult:
        p = self.profile
        if p.data_file:
            if inputs.offset:
                raise StageError("conversations: a data file is read in one pass (unique ids, the scale's count); "
                                 "it cannot start at a batch offset")
            check_scale_fits(p.data_file, inputs.scale_n, p.allow_short_data)
            loaded = load_conversations(resolve_data_file(p.data_file), limit=inputs.scale_n, lenient=p.lenient,
                                        format=p.data_format, allow_short=p.allow_short_data)
            convs, skipped = loaded.conversations, loaded.skipped
            extra = {"source": loaded.source, "problems": loaded.problems[:20]}
        else:
            # Every conversation depends only on (seed, index): a batch at an offset is exactly that
            # slice of the all-at-once corpus.
            convs, skipped = list(iter_conversations(inputs.scale_n, seed=p.seed, start=inputs.offset)), 0
            extra = {"source": f"synthetic(seed={p.seed})"}
        table = conversations_to_table(convs)
        extra["raw_text_bytes"] = int(sum(len(m.content.encode()) for c in convs for m in c.messages))
        return StageResult(StageData(tables={"main": table}), items_in=len(convs) + skipped,
                           items_out=len(convs), skipped=skipped, extra=extra)

    def _summaries(self, inputs: StageInputs) -> StageResult:
        convs = conversations_from_table(inputs.upstream["conversations"].tables["main"])
        model = self.models.summary_model()
        extra = {"model": model.name}
        if isinstance(model, SelectsSummaries):  # a Kura checkpoint: read once, every conversation covered
            model = model.select([c.chat_id for c in convs])
            extra.update(model.read_info)
        table = summarise(convs, model, batch_size=max(self.profile.batch_size, 1), progress=inputs.progress,
                          embed_layout=self.profile.embed_text)
        return StageResult(StageData(tables={"main": table}), items_in=len(convs), items_out=len(table),
                           api=_counters(model), extra=extra)

    def _embeddings(self, inputs: StageInputs) -> StageResult:
        summaries = inputs.upstream["summaries"].tables["main"]
        model = self.models.embedding_model()
        vectors = embed_summaries(summaries, model, progress=inputs.progress)
        ids = pd.DataFrame({"chat_id": summaries["chat_id"]})
        setup = dict(self._setup.pop("embeddings", {}))
        rate, sample_n = setup.pop("model_items_per_s", None), setup.pop("model_sample_n", None)
        return StageResult(StageData(tables={"ids": ids}, arrays={"main": vectors}), items_in=len(summaries),
                           items_out=len(vectors), api=_counters(model),
                           extra={"model": model.name, "dimension": int(vectors.shape[1]),
                                  "embedding_backend": self.profile.embedding_backend,
                                  "batch_size": getattr(model, "batch_size", None), **setup},
                           model_items_per_s=rate, model_sample_n=sample_n)

    def _clusters(self, inputs: StageInputs) -> StageResult:
        summaries = inputs.upstream["summaries"].tables["main"]
        vectors = inputs.upstream["embeddings"].arrays["main"]
        truth = _truth(inputs.upstream["conversations"].tables["main"], summaries, self.profile.truth_levels)
        method, namer = self.models.clustering_method(len(summaries)), self.models.namer()
        _request_kind(namer, "cluster_name")
        result = cluster_summaries(summaries, vectors, method, namer, truth=truth, seed=self.profile.seed)
        arrays = {"centroids": result.centroids}  # what meta_clusters groups by (meta_grouping "centroids")
        if isinstance(method, BuildsKnnGraph) and method.knn is not None:  # for the projection to reuse
            arrays.update(knn_indices=method.knn.indices, knn_distances=method.knn.distances)
        return StageResult(StageData(tables={"main": result.clusters, "assignments": result.assignments},
                                     arrays=arrays),
                           items_in=len(summaries), items_out=len(result.clusters), quality=result.quality,
                           api=_counters(namer), extra={"method": method.name, "params": _jsonable(method.params),
                                  **(_jsonable(method.fit_report()) if isinstance(method, ReportsFit) else {})})

    def _meta_clusters(self, inputs: StageInputs) -> StageResult:
        stored = inputs.upstream["clusters"]
        clusters = stored.tables["main"]
        centroids = stored.arrays.get("centroids") if self.profile.meta_grouping == "centroids" else None
        if self.profile.meta_grouping == "centroids" and centroids is None:
            raise StageError("meta_clusters: meta_grouping 'centroids' needs the clusters stage's centroids, which "
                             "this stored clusters output predates: materialize clusters again")
        embedder = self.models.embedding_model() if centroids is None else None
        namer = self.models.namer()
        _request_kind(namer, "meta_cluster_name")
        hierarchy = build_hierarchy(clusters, embedder, namer, max_clusters=self.profile.meta_max_clusters,
                                    max_iterations=self.profile.meta_max_iterations, seed=self.profile.seed,
                                    base_vectors=centroids)
        table = hierarchy.table
        api = _merge(_counters(embedder), _counters(namer))  # _counters(None) is None
        setup = self._setup.pop("meta_clusters", {})
        return StageResult(StageData(tables={"main": table}), items_in=len(clusters), items_out=len(table),
                           api=api, extra={**setup, "grouping": self.profile.meta_grouping,
                                           "iterations": hierarchy.iterations, "cap_hit": hierarchy.cap_hit,
                                           "roots": int(table["parent_id"].isna().sum()),
                                           "levels": int(table["level"].max()) + 1 if len(table) else 0})

    def _projections(self, inputs: StageInputs) -> StageResult:
        vectors = inputs.upstream["embeddings"].arrays["main"]
        assignments = inputs.upstream["clusters"].tables["assignments"]
        method = self.models.projection_method()
        knn = stored_knn(inputs.upstream["clusters"], self.models.knn_metric())
        table = project(vectors, assignments, method, knn=knn)
        reused = isinstance(method, ReusesKnnGraph) and bool(method.reused_knn)
        return StageResult(StageData(tables={"main": table}), items_in=len(vectors), items_out=len(table),
                           extra={"method": method.name, "reused_knn": reused})


def stored_knn(clusters: StageData, metric: str):
    """The k-NN graph the clusters stage stored (umap-hdbscan), or None."""

    if "knn_indices" not in clusters.arrays or "knn_distances" not in clusters.arrays:
        return None
    return KnnGraph(clusters.arrays["knn_indices"], clusters.arrays["knn_distances"], metric)


def _truth(conversations: pd.DataFrame, summaries: pd.DataFrame,
           truth_levels: Sequence[str] = DEFAULT_TRUTH_LEVELS) -> list | None:
    """The finest truth level's values in the summaries' order (a stage record's own ARI/NMI), or None
    when any conversation lacks one."""

    return finest_truth(conversations, summaries["chat_id"].tolist(), truth_levels)


def _counters(model) -> ApiCounters | None:
    return model.counters if isinstance(model, CountsApiCalls) else None


def _merge(*counters: ApiCounters | None) -> ApiCounters | None:
    present = [c for c in counters if c is not None]
    if not present:
        return None
    total = ApiCounters()
    for c in present:
        total.merge(c)
    return total


def _jsonable(value):
    return json.loads(json.dumps(value, default=lambda v: v.item() if isinstance(v, np.generic) else str(v)))


def _request_kind(model, kind: str) -> None:
    """Name an API model's requests in the api log: one namer serves both the clusters' and the
    meta-clusters' names, and stages run one at a time, so the stage says which it is."""
    if hasattr(model, "request_kind"):
        model.request_kind = kind
