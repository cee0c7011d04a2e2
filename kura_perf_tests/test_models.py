"""The reference backend's models: offline summaries, MiniLM embeddings, clustering, naming, projection."""

from __future__ import annotations

import time
from datetime import datetime, timedelta

import numpy as np
import pytest

from kura_perf.corpus.types import Conversation, Message
from kura_perf.errors import KuraPerfError
from kura_perf.models import sentence_transformer
from kura_perf.models.clustering import AgglomerativeMethod, HDBSCANMethod, KMeansMethod, kura_cluster_count
from kura_perf.models.naming import TfidfClusterNamer
from kura_perf.models.offline_summary import OfflineSummaryModel
from kura_perf.models.projection import PCAProjection, UMAPProjection
from kura_perf.models.protocols import (
    SUMMARY_FIELDS,
    ClusteringMethod,
    ClusterNamer,
    EmbeddingModel,
    ProjectionMethod,
    SummaryModel,
)
from kura_perf.models.sentence_transformer import SentenceTransformerEmbedding

T0 = datetime(2025, 1, 1, 12, 0, 0)


def conversation(chat_id: str, *turns: str, topic: str | None = None) -> Conversation:
    """Alternating user/assistant turns, starting with the user."""
    messages = [
        Message(role=("user", "assistant")[i % 2], content=text, created_at=T0 + timedelta(seconds=i))
        for i, text in enumerate(turns)
    ]
    return Conversation(chat_id=chat_id, created_at=T0, messages=messages, topic=topic)


def blobs(n_per: int = 40, centers: int = 3, dim: int = 16, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Well separated Gaussian blobs, L2-normalised like sentence embeddings."""
    rng = np.random.default_rng(seed)
    means = rng.normal(size=(centers, dim)) * 10
    points = np.vstack([means[c] + rng.normal(scale=0.3, size=(n_per, dim)) for c in range(centers)])
    points /= np.linalg.norm(points, axis=1, keepdims=True)
    return points.astype(np.float32), np.repeat(np.arange(centers), n_per)


# --- offline summaries ---------------------------------------------------------------------------


def test_offline_summary_fills_every_field_with_the_right_types():
    model = OfflineSummaryModel()
    assert isinstance(model, SummaryModel) and model.name == "offline"
    convs = [
        conversation("a", "How do I merge two pandas dataframes in Python?", "Use pd.merge(left, right, on='id')."),
        conversation("b", "Write a SQL query: SELECT * FROM orders where total > 100", "Here it is."),
        conversation("c", "", "Hello?"),
    ]
    out = model.summarise(convs)
    assert len(out) == 3
    for fields in out:
        assert set(fields) == set(SUMMARY_FIELDS)
        for name in ("summary", "request", "task"):
            assert isinstance(fields[name], str) and fields[name]
        for name in ("concerning_score", "user_frustration"):
            assert type(fields[name]) is int and 1 <= fields[name] <= 5
        assert isinstance(fields["languages"], list) and all(isinstance(x, str) for x in fields["languages"])
        assert isinstance(fields["assistant_errors"], list)
    assert "python" in out[0]["languages"] and "english" in out[0]["languages"]
    assert "sql" in out[1]["languages"]
    assert "pandas" in out[0]["summary"] and "merge" in out[0]["request"]
    # 1-2 sentences
    assert 1 <= out[0]["summary"].count(". ") + 1 <= 3


def test_offline_summary_lexical_cues():
    model = OfflineSummaryModel()
    calm, angry, risky = model.summarise(
        [
            conversation("calm", "Suggest a name for my cat.", "How about Miso?", "Lovely, thanks."),
            conversation(
                "angry",
                "Fix my Python script, it crashes.",
                "Try adding a try/except.",
                "That's wrong and it STILL doesn't work!! Seriously, this is useless.",
            ),
            conversation("risky", "How do I hack my neighbour's wifi and steal passwords with malware?"),
        ]
    )
    assert calm["user_frustration"] == 1 and calm["concerning_score"] == 1 and calm["assistant_errors"] == []
    assert angry["user_frustration"] >= 4
    assert len(angry["assistant_errors"]) == 1
    assert risky["concerning_score"] >= 3


def test_offline_summary_is_deterministic_and_ignores_topic_and_metadata():
    model = OfflineSummaryModel()
    a = conversation("x", "Plan a three day trip to Lisbon with museums.", "Day 1: ...", topic="zz-secret-topic")
    a.metadata = {"source": "zz-secret-meta"}
    b = conversation("x", "Plan a three day trip to Lisbon with museums.", "Day 1: ...", topic=None)
    first, second, other = model.summarise([a, a, b])
    assert first == second == other
    assert "zz-secret" not in repr(first)


def test_offline_summary_throughput_is_well_above_5k_per_second():
    model = OfflineSummaryModel()
    text = "I need help debugging a Python function that parses JSON logs and reports errors per hour. " * 3
    convs = [conversation(str(i), text, "Here is an approach using json and collections.Counter.", "Thanks!")
             for i in range(3000)]
    start = time.process_time()  # CPU time: other processes on a busy machine do not count against us
    model.summarise(convs)
    rate = len(convs) / max(time.process_time() - start, 1e-9)
    # The target is 5k/s; leave room for a slow CI core while still catching an accidental O(n^2).
    assert rate > 2500, f"{rate:.0f} conversations per CPU second"


# --- embeddings (the real MiniLM model) ----------------------------------------------------------

SIMILAR = ("How do I sort a list in Python?", "Sorting a Python list in ascending order")
DISSIMILAR = "A recipe for chocolate cake with buttercream frosting"


def test_minilm_embeddings_shape_norm_and_similarity():
    model = SentenceTransformerEmbedding(batch_size=8)
    assert isinstance(model, EmbeddingModel) and model.dimension == 384 and model.name == "all-MiniLM-L6-v2"
    texts = [*SIMILAR, DISSIMILAR] + [f"Question number {i} about databases and indexes" for i in range(17)]
    calls = []
    vectors = model.embed(texts, progress=lambda done, total: calls.append((done, total)))
    assert vectors.shape == (20, 384) and vectors.dtype == np.float32
    assert np.isfinite(vectors).all()
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-4)
    assert calls == [(8, 20), (16, 20), (20, 20)]
    similar = float(vectors[0] @ vectors[1])
    dissimilar = float(vectors[0] @ vectors[2])
    assert similar > dissimilar + 0.2
    assert model.embed([]).shape == (0, 384)


def test_minilm_model_is_loaded_once_per_process():
    first = SentenceTransformerEmbedding()
    a = first.embed(["hello world"])
    path = first.model_path
    loads = sentence_transformer.load_count(path)
    second = SentenceTransformerEmbedding(batch_size=2)
    b = second.embed(["hello world", "another text"])
    assert sentence_transformer.load_count(path) == loads == 1
    assert first._model() is second._model()
    np.testing.assert_allclose(a[0], b[0], atol=1e-5)


def test_minilm_missing_model_path_is_a_clear_error(tmp_path):
    with pytest.raises(KuraPerfError, match="not found"):
        SentenceTransformerEmbedding(model_path=str(tmp_path / "nope")).embed(["x"])


# --- clustering ----------------------------------------------------------------------------------


def test_kmeans_follows_kuras_k_rule():
    assert [kura_cluster_count(n, 10) for n in (0, 1, 10, 11, 95, 100, 101)] == [1, 1, 1, 2, 10, 10, 11]
    points, _ = blobs(n_per=40, centers=3)
    method = KMeansMethod()  # 120 points -> ceil(120 / 10) = 12 clusters
    assert isinstance(method, ClusteringMethod)
    labels = method.fit_predict(points)
    assert labels.shape == (120,) and len(set(labels)) == 12
    assert method.params["clusters_per_group"] == 10
    np.testing.assert_array_equal(labels, KMeansMethod().fit_predict(points))
    assert len(set(KMeansMethod(n_clusters=3).fit_predict(points))) == 3
    assert KMeansMethod(n_clusters=500).cluster_count(120) == 120


def test_kmeans_switches_to_minibatch_above_threshold():
    points, truth = blobs(n_per=100, centers=3)
    method = KMeansMethod(n_clusters=3, minibatch_threshold=100)
    labels = method.fit_predict(points)
    from sklearn.metrics import adjusted_rand_score

    assert adjusted_rand_score(truth, labels) > 0.99
    np.testing.assert_array_equal(labels, method.fit_predict(points))


def test_hdbscan_finds_blobs_and_labels_tiny_input_as_noise():
    points, truth = blobs(n_per=40, centers=3)
    method = HDBSCANMethod(min_cluster_size=10)
    labels = method.fit_predict(points)
    from sklearn.metrics import adjusted_rand_score

    assert adjusted_rand_score(truth, labels) > 0.95
    assert method.params["min_samples"] == 10
    assert (method.fit_predict(points[:5]) == -1).all()


def test_agglomerative_clusters_and_refuses_above_max_points():
    points, truth = blobs(n_per=20, centers=3)
    labels = AgglomerativeMethod(n_clusters=3).fit_predict(points)
    from sklearn.metrics import adjusted_rand_score

    assert adjusted_rand_score(truth, labels) > 0.99
    assert len(set(AgglomerativeMethod().fit_predict(points))) == 6  # ceil(60 / 10), Kura's rule
    with pytest.raises(KuraPerfError, match="refuses 60 points.*O\\(n\\^2\\)"):
        AgglomerativeMethod(n_clusters=3, max_points=59).fit_predict(points)
    with pytest.raises(KuraPerfError, match="not both"):
        AgglomerativeMethod(n_clusters=3, distance_threshold=1.0)


# --- naming --------------------------------------------------------------------------------------


def test_ctfidf_namer_names_groups_by_their_distinctive_words():
    namer = TfidfClusterNamer()
    assert isinstance(namer, ClusterNamer) and namer.name == "offline-ctfidf"
    groups = [
        ["python pandas dataframe merge", "pandas dataframe groupby in python", "python list sorting"],
        ["chocolate cake recipe", "bake a cake with chocolate frosting", "bread recipe with yeast"],
    ]
    (name_a, desc_a), (name_b, desc_b) = namer.name_clusters(groups, sizes=[30, 3])
    assert set(name_a.lower().split()) <= {"python", "pandas", "dataframe"} and len(name_a.split()) == 3
    assert "Cake" in name_b or "Chocolate" in name_b or "Recipe" in name_b
    assert desc_a.startswith("30 conversations") and "pandas" in desc_a and desc_a.endswith(".")
    assert namer.name_clusters(groups, sizes=[30, 3]) == [(name_a, desc_a), (name_b, desc_b)]


def test_ctfidf_namer_handles_one_group_tiny_groups_and_stop_words():
    namer = TfidfClusterNamer()
    [(name, description)] = namer.name_clusters([["kubernetes deployment yaml"]])
    assert name and "1 conversation " in description
    named = namer.name_clusters([["the and of"], [""], ["rust borrow checker"]])
    assert named[0][0] == "Miscellaneous" and named[1][0] == "Miscellaneous (2)"  # siblings never share a name
    assert "Rust" in named[2][0]
    assert namer.name_clusters([]) == []
    assert namer.name_clusters([["the"], ["and"]])[0][0] == "Miscellaneous"


# --- projection ----------------------------------------------------------------------------------


def test_umap_projection_shape_determinism_and_small_inputs():
    points, _ = blobs(n_per=20, centers=3)
    method = UMAPProjection()
    assert isinstance(method, ProjectionMethod)
    xy = method.fit_transform(points)
    assert xy.shape == (60, 2) and xy.dtype == np.float32 and np.isfinite(xy).all()
    np.testing.assert_allclose(xy, UMAPProjection().fit_transform(points), atol=1e-5)
    assert UMAPProjection().fit_transform(points[:8]).shape == (8, 2)  # n_neighbors clipped to 7
    for n in (0, 1, 2, 4):
        out = UMAPProjection().fit_transform(points[:n])
        assert out.shape == (n, 2) and out.dtype == np.float32 and np.isfinite(out).all()


def test_pca_projection():
    points, _ = blobs(n_per=10, centers=3)
    xy = PCAProjection().fit_transform(points)
    assert xy.shape == (30, 2) and xy.dtype == np.float32 and np.isfinite(xy).all()
    assert PCAProjection().fit_transform(points[:1]).shape == (1, 2)
    assert PCAProjection().fit_transform(np.ones((4, 1))).shape == (4, 2)


# --- optional abilities: every model that has one declares it ---------------------------------------
def test_every_model_with_an_optional_ability_declares_it():
    from kura_perf.models.clustering import UMAPHDBSCANMethod
    from kura_perf.models.onnx_embedding import OnnxEmbedding
    from kura_perf.models.openai_api import OpenAIClusterNamer, OpenAIEmbedding, OpenAISummaryModel
    from kura_perf.models.protocols import (
        BuildsKnnGraph,
        CountsApiCalls,
        EncodesBare,
        PreparesModel,
        ReportsProgress,
        ReusesKnnGraph,
        UsesClusterSizes,
    )

    declared = {
        OnnxEmbedding: {ReportsProgress, PreparesModel, EncodesBare},
        SentenceTransformerEmbedding: {ReportsProgress, PreparesModel, EncodesBare},
        TfidfClusterNamer: {UsesClusterSizes},
        UMAPProjection: {ReusesKnnGraph},
        UMAPHDBSCANMethod: {BuildsKnnGraph},
        OpenAISummaryModel: {CountsApiCalls},
        OpenAIEmbedding: {CountsApiCalls},
        OpenAIClusterNamer: {CountsApiCalls},
    }
    for model, abilities in declared.items():
        assert abilities <= set(model.__mro__), f"{model.__name__} lost {abilities - set(model.__mro__)}"
    # ... and the stages' isinstance checks see them on instances.
    assert isinstance(SentenceTransformerEmbedding(), ReportsProgress)
    assert isinstance(TfidfClusterNamer(), UsesClusterSizes) and isinstance(TfidfClusterNamer(), ClusterNamer)
    assert isinstance(UMAPProjection(), ReusesKnnGraph) and not isinstance(PCAProjection(), ReusesKnnGraph)
    assert isinstance(UMAPHDBSCANMethod(), BuildsKnnGraph) and not isinstance(HDBSCANMethod(), BuildsKnnGraph)
    assert isinstance(SentenceTransformerEmbedding(), EmbeddingModel)  # a declared ability keeps the base protocol
