"""The reference pipeline's stage functions: schemas, validation, determinism, tree shape, quality."""

from __future__ import annotations

import hashlib
import random
import re
from datetime import datetime, timedelta

import numpy as np
import pandas as pd
import pytest

from kura_perf.corpus.types import Conversation, Message
from kura_perf.errors import StageError
from kura_perf.models.clustering import HDBSCANMethod, KMeansMethod
from kura_perf.models.naming import TfidfClusterNamer
from kura_perf.models.offline_summary import OfflineSummaryModel
from kura_perf.models.projection import PCAProjection
from kura_perf.models.protocols import SUMMARY_FIELDS
from kura_perf.stages.clusters import ClusterResult, cluster_summaries
from kura_perf.stages.embeddings import embed_summaries
from kura_perf.stages.meta_clusters import HIERARCHY_COLUMNS, Hierarchy, build_hierarchy
from kura_perf.stages.projections import project
from kura_perf.stages.quality import QUALITY_KEYS, clustering_quality
from kura_perf.stages.summaries import SUMMARY_COLUMNS, summarise

T0 = datetime(2025, 1, 1, 12, 0, 0)

# Ground-truth topic labels that never occur in the conversation text.
TOPICS = {
    "zzgt-software": (
        ["How do I merge two pandas dataframes in Python?", "My Python script raises a KeyError in a dict",
         "Write a Python function to parse JSON logs", "Why is my pandas groupby so slow?"],
        ["python", "pandas", "dataframe", "function", "script"],
    ),
    "zzgt-cooking": (
        ["Give me a recipe for vegetarian lasagna", "How long should I bake sourdough bread?",
         "What can I cook with chickpeas and spinach?", "Suggest a dessert recipe with chocolate"],
        ["recipe", "oven", "bake", "ingredients", "dinner"],
    ),
    "zzgt-travel": (
        ["Plan a five day itinerary for Kyoto", "What should I pack for a hiking trip in Patagonia?",
         "Find cheap flights and hotels in Lisbon", "Best time to visit Iceland for the northern lights?"],
        ["itinerary", "flights", "hotel", "trip", "visit"],
    ),
}


def make_conversations(n: int, seed: int = 0) -> list[Conversation]:
    rng = random.Random(seed)
    topics = sorted(TOPICS)
    out = []
    for i in range(n):
        topic = topics[i % len(topics)]
        openers, words = TOPICS[topic]
        opener = rng.choice(openers)
        extra = " ".join(rng.sample(words, 3))
        turns = [f"{opener} I care about {extra}.", f"Sure, here is some help with {extra}.", "Thanks!"]
        messages = [
            Message(role=("user", "assistant")[j % 2], content=t, created_at=T0 + timedelta(seconds=j))
            for j, t in enumerate(turns)
        ]
        out.append(Conversation(chat_id=f"chat-{i:04d}", created_at=T0, messages=messages, topic=topic))
    return out


# The offline summariser's and the summary layout's own words: shared by every text, so noise here.
TEMPLATE_WORDS = set("summary request task languages assistant_errors user overall assistant english "
                     "asks something about they write thanks sure here some help with care".split())


class HashingEmbedder:
    """Deterministic bag-of-words embedder: fast, and texts sharing words land close together."""

    name = "hashing"

    def __init__(self, dimension: int = 256) -> None:
        self.dimension = dimension
        self.calls = 0

    def embed(self, texts, progress=None):
        self.calls += 1
        out = np.zeros((len(texts), self.dimension), dtype=np.float32)
        for row, text in enumerate(texts):
            for word in re.findall(r"[a-z]{4,}", text.lower()):
                if word not in TEMPLATE_WORDS:
                    out[row, int(hashlib.md5(word.encode()).hexdigest(), 16) % self.dimension] += 1.0
        out /= np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-9)
        if progress is not None:
            progress(len(texts), len(texts))
        return out


@pytest.fixture(scope="module")
def conversations() -> list[Conversation]:
    return make_conversations(150)


@pytest.fixture(scope="module")
def summaries(conversations) -> pd.DataFrame:
    return summarise(conversations, OfflineSummaryModel())


# --- summaries -----------------------------------------------------------------------------------


def test_summaries_schema_order_and_progress(conversations):
    calls = []
    frame = summarise(conversations, OfflineSummaryModel(), batch_size=64, progress=lambda d, t: calls.append((d, t)))
    assert list(frame.columns) == list(SUMMARY_COLUMNS) == ["chat_id", *SUMMARY_FIELDS, "embed_text"]
    assert frame["chat_id"].tolist() == [c.chat_id for c in conversations]
    assert calls == [(64, 150), (128, 150), (150, 150)]
    assert frame["concerning_score"].dtype == np.int64 and frame["user_frustration"].dtype == np.int64
    assert all(isinstance(v, list) for v in frame["languages"])
    assert frame["embed_text"].str.contains("<summary>").all()
    pd.testing.assert_frame_equal(frame, summarise(conversations, OfflineSummaryModel()))
    empty = summarise([], OfflineSummaryModel())
    assert list(empty.columns) == list(SUMMARY_COLUMNS) and len(empty) == 0


def test_ground_truth_topic_never_reaches_summaries(summaries):
    text = " ".join(summaries.drop(columns=["chat_id"]).astype(str).to_numpy().ravel())
    for topic in TOPICS:
        assert topic not in text
    assert "zzgt" not in text


def test_ground_truth_topic_never_reaches_summaries_of_the_synthetic_corpus():
    generator = pytest.importorskip("kura_perf.corpus.generator")
    conversations = generator.generate_conversations(300, seed=1)
    frame = summarise(conversations, OfflineSummaryModel())
    checked = 0
    for conversation, text in zip(conversations, frame["embed_text"]):
        if conversation.topic and conversation.topic.lower() not in conversation.text().lower():
            assert conversation.topic.lower() not in text.lower()
            checked += 1
    assert checked > 0


class BrokenSummaryModel:
    name = "broken"

    def __init__(self, mutate=None, drop_last=False):
        self.mutate, self.drop_last = mutate, drop_last

    def summarise(self, conversations):
        out = OfflineSummaryModel().summarise(conversations)
        if self.drop_last:
            out = out[:-1]
        if self.mutate:
            self.mutate(out[-1])
        return out


@pytest.mark.parametrize(
    "mutate, field",
    [
        (lambda d: d.pop("task"), "task"),
        (lambda d: d.update(concerning_score=7), "concerning_score"),
        (lambda d: d.update(user_frustration=True), "user_frustration"),
        (lambda d: d.update(languages="python"), "languages"),
        (lambda d: d.update(summary=None), "summary"),
        (lambda d: d.update(topic="software"), "topic"),
    ],
)
def test_summaries_reject_invalid_model_output(conversations, mutate, field):
    with pytest.raises(StageError, match=f"chat_id chat-0009, field '{field}'"):
        summarise(conversations[:10], BrokenSummaryModel(mutate=mutate))


def test_summaries_reject_a_missing_summary(conversations):
    with pytest.raises(StageError, match="returned 9 summaries for a batch of 10"):
        summarise(conversations[:10], BrokenSummaryModel(drop_last=True))


# --- embeddings ----------------------------------------------------------------------------------


def test_embed_summaries_shape_dtype_and_progress(summaries):
    calls = []
    vectors = embed_summaries(summaries, HashingEmbedder(), progress=lambda d, t: calls.append((d, t)))
    assert vectors.shape == (150, 256) and vectors.dtype == np.float32 and np.isfinite(vectors).all()
    assert calls[-1] == (150, 150)


def test_embed_summaries_rejects_wrong_dimension_and_non_finite(summaries):
    class WrongDimension(HashingEmbedder):
        def embed(self, texts, progress=None):
            return super().embed(texts)[:, :10]

    class NaNs(HashingEmbedder):
        def embed(self, texts, progress=None):
            out = super().embed(texts)
            out[3, 0] = np.nan
            return out

    with pytest.raises(StageError, match=r"shape \(150, 10\), expected \(150, 256\)"):
        embed_summaries(summaries, WrongDimension())
    with pytest.raises(StageError, match="non-finite.*chat-0003"):
        embed_summaries(summaries, NaNs())


# --- optional model abilities: declared, and used only when declared ----------------------------


class FakeEncoder:
    """Stands in for the ONNX session: rows of ones, 384-d."""

    dimension = 384

    def encode_batch(self, texts):
        return np.ones((len(texts), self.dimension), dtype=np.float32)


def _onnx_with_fake_session(batch_size):
    from types import SimpleNamespace

    from kura_perf.models.onnx_embedding import OnnxEmbedding

    cache = SimpleNamespace(threshold=lambda backend: 0.99)
    model = OnnxEmbedding("onnx-int8", cache, batch_size=batch_size)
    model._encoder = FakeEncoder()
    model.export = SimpleNamespace(exported_now=False, setup_s=0.0, path="fake.onnx", manifest={})
    return model


def test_the_onnx_embedder_reports_progress_batch_by_batch(summaries, monkeypatch):
    from kura_perf.models import onnx_embedding

    calls = []
    monkeypatch.setattr(onnx_embedding, "PROGRESS_EVERY", 2)
    embed_summaries(summaries.head(5), _onnx_with_fake_session(batch_size=2), progress=lambda d, t: calls.append((d, t)))
    assert calls == [(2, 5), (4, 5), (5, 5)]  # one report at the end only, had it lost ReportsProgress
    # Reports come at least PROGRESS_EVERY texts apart (batch 1 would otherwise report once per text), and
    # always at the end.
    monkeypatch.setattr(onnx_embedding, "PROGRESS_EVERY", 3)
    calls.clear()
    embed_summaries(summaries.head(7), _onnx_with_fake_session(batch_size=1), progress=lambda d, t: calls.append((d, t)))
    assert calls == [(3, 7), (6, 7), (7, 7)]


def test_the_torch_embedder_reports_progress_batch_by_batch(summaries):
    from kura_perf.models.sentence_transformer import SentenceTransformerEmbedding

    class FakeModel:
        def encode(self, texts, **_):
            return np.ones((len(texts), 384), dtype=np.float32)

    model = SentenceTransformerEmbedding(batch_size=2)
    model._model = lambda: FakeModel()
    calls = []
    embed_summaries(summaries.head(5), model, progress=lambda d, t: calls.append((d, t)))
    assert calls == [(2, 5), (4, 5), (5, 5)]


def test_an_embedder_that_does_not_declare_progress_is_not_handed_it(summaries):
    class Undeclared(HashingEmbedder):
        def embed(self, texts, progress=None):  # takes the keyword, but says nothing: not asked
            self.got_progress = progress is not None
            return super().embed(texts)

    model, calls = Undeclared(), []
    embed_summaries(summaries, model, progress=lambda d, t: calls.append((d, t)))
    assert model.got_progress is False and calls == [(150, 150)]


def test_the_umap_projection_is_handed_the_stored_knn_graph(summaries):
    from kura_perf.models.projection import UMAPProjection

    vectors = embed_summaries(summaries, HashingEmbedder())
    assignments = cluster_summaries(summaries, vectors, KMeansMethod(n_clusters=3), TfidfClusterNamer()).assignments
    graph = object()

    class Spy(UMAPProjection):
        def fit_transform(self, vectors, knn=None):
            self.got = knn
            return PCAProjection().fit_transform(vectors)

    spy = Spy()
    project(vectors, assignments, spy, knn=graph)
    assert spy.got is graph

    class Plain:  # takes knn, but does not declare ReusesKnnGraph: never handed one
        name = "plain"

        def fit_transform(self, vectors, knn=None):
            self.got = knn
            return PCAProjection().fit_transform(vectors)

    plain = Plain()
    project(vectors, assignments, plain, knn=graph)
    assert plain.got is None


# --- quality -------------------------------------------------------------------------------------


def test_quality_on_separable_blobs_vs_random_labels():
    rng = np.random.default_rng(0)
    centers = rng.normal(size=(4, 32)) * 10
    points = np.vstack([c + rng.normal(scale=0.5, size=(100, 32)) for c in centers]).astype(np.float32)
    truth = [f"t{i}" for i in np.repeat(np.arange(4), 100)]
    perfect = np.repeat(np.arange(4), 100)
    good = clustering_quality(points, perfect, truth=truth)
    assert set(good) == set(QUALITY_KEYS)
    assert good["ari"] > 0.99 and good["nmi"] > 0.99 and good["v_measure"] > 0.99
    assert good["silhouette"] > 0.8 and good["n_clusters"] == 4 and good["noise_share"] == 0.0
    bad = clustering_quality(points, rng.integers(0, 4, size=400), truth=truth)
    assert abs(bad["ari"]) < 0.05 and bad["silhouette"] < 0.1
    assert bad["davies_bouldin"] > good["davies_bouldin"]


def test_quality_edge_cases_keep_every_key():
    points = np.random.default_rng(1).normal(size=(50, 8))
    one = clustering_quality(points, np.zeros(50, dtype=int))
    assert set(one) == set(QUALITY_KEYS)
    assert one["silhouette"] is None and one["davies_bouldin"] is None and one["ari"] is None
    labels = np.array([0] * 20 + [1] * 20 + [-1] * 10)
    noisy = clustering_quality(points, labels, truth=["a"] * 49 + [None])
    assert noisy["noise_share"] == pytest.approx(0.2) and noisy["n_clusters"] == 2 and noisy["ari"] is None
    sampled = clustering_quality(points, labels, sample_size=10, seed=3)
    assert sampled == clustering_quality(points, labels, sample_size=10, seed=3)
    empty = clustering_quality(np.zeros((0, 8)), np.zeros(0, dtype=int))
    assert empty["n_clusters"] == 0 and empty["silhouette"] is None


# --- base clusters -------------------------------------------------------------------------------


class RecordingNamer(TfidfClusterNamer):
    def name_clusters(self, groups, sizes=None):
        self.seen = ([len(g) for g in groups], list(sizes))
        return super().name_clusters(groups, sizes=sizes)


def test_cluster_summaries_schema_names_and_quality(conversations, summaries):
    vectors = embed_summaries(summaries, HashingEmbedder())
    namer = RecordingNamer()
    result = cluster_summaries(summaries, vectors, KMeansMethod(n_clusters=3), namer,
                               truth=[c.topic for c in conversations])
    assert isinstance(result, ClusterResult)
    assert list(result.assignments.columns) == ["chat_id", "cluster_id"]
    assert result.assignments["chat_id"].tolist() == summaries["chat_id"].tolist()
    assert result.assignments["cluster_id"].dtype == np.int64
    assert list(result.clusters.columns) == ["cluster_id", "name", "description", "size"]
    assert sorted(result.clusters["cluster_id"]) == [0, 1, 2]
    assert result.clusters["size"].sum() == 150
    assert (result.clusters["name"].str.len() > 0).all()
    sample_sizes, sizes = namer.seen
    assert max(sample_sizes) <= 50 and sum(sizes) == 150
    assert set(result.quality) == set(QUALITY_KEYS) and result.quality["ari"] > 0.9
    again = cluster_summaries(summaries, vectors, KMeansMethod(n_clusters=3), TfidfClusterNamer())
    pd.testing.assert_frame_equal(result.assignments, again.assignments)
    pd.testing.assert_frame_equal(result.clusters, again.clusters)
    for topic in TOPICS:
        assert not result.clusters["name"].str.contains(topic).any()


def test_cluster_summaries_with_noise_renumbers_and_reports_it(summaries):
    vectors = embed_summaries(summaries, HashingEmbedder())

    class Sparse:
        name = "sparse"

        def fit_predict(self, v):
            labels = np.where(np.arange(len(v)) % 3 == 0, 7, 42)
            labels[:5] = -1
            return labels

    result = cluster_summaries(summaries, vectors, Sparse(), TfidfClusterNamer())
    assert sorted(result.assignments["cluster_id"].unique()) == [-1, 0, 1]
    noise = result.clusters.set_index("cluster_id").loc[-1]
    assert noise["size"] == 5 and result.clusters["size"].sum() == 150
    assert result.quality["noise_share"] == pytest.approx(5 / 150)


def test_cluster_summaries_rejects_mismatched_inputs(summaries):
    with pytest.raises(StageError, match="149 embeddings for 150"):
        cluster_summaries(summaries, np.zeros((149, 4)), KMeansMethod(), TfidfClusterNamer())


# --- hierarchy -----------------------------------------------------------------------------------


def base_clusters(count: int, seed: int = 0) -> pd.DataFrame:
    rng = random.Random(seed)
    vocabulary = "python pandas sql recipe cake bread flights hotel visa guitar chords piano taxes " \
                 "invoice budget poetry novel essay kubernetes docker linux".split()
    rows = []
    for i in range(count):
        words = rng.sample(vocabulary, 3)
        rows.append({"cluster_id": i, "name": " ".join(w.title() for w in words),
                     "description": f"{i + 1} conversations mostly about {', '.join(words)}.", "size": i + 1})
    return pd.DataFrame(rows)


def assert_is_tree(hierarchy: Hierarchy, base: pd.DataFrame, max_clusters: int) -> None:
    table = hierarchy.table
    assert list(table.columns) == list(HIERARCHY_COLUMNS)
    assert table["cluster_id"].is_unique
    ids = set(table["cluster_id"])
    real_base = base[base["cluster_id"] != -1]
    leaves = table[table["is_leaf"]]
    assert set(leaves["cluster_id"]) == {f"c{i}" for i in real_base["cluster_id"]}
    assert sorted(leaves["base_cluster_id"].astype(int)) == sorted(real_base["cluster_id"])
    # Every non-leaf has children; every parent reference exists; levels rise toward the root.
    parents = set(table["parent_id"].dropna())
    assert parents <= ids and parents == set(table.loc[~table["is_leaf"], "cluster_id"])
    by_id = table.set_index("cluster_id")
    for node_id in ids:
        seen = set()
        while by_id.loc[node_id, "parent_id"] is not None:  # a single path to a root, no cycles
            assert node_id not in seen
            seen.add(node_id)
            parent = by_id.loc[node_id, "parent_id"]
            assert by_id.loc[parent, "level"] > by_id.loc[node_id, "level"]
            node_id = parent
    children_size = table.dropna(subset=["parent_id"]).groupby("parent_id")["size"].sum()
    for parent, size in children_size.items():
        assert by_id.loc[parent, "size"] == size
    roots = table[table["parent_id"].isna()]
    assert roots["size"].sum() == real_base["size"].sum()
    assert hierarchy.roots == len(roots)
    assert len(roots) <= max_clusters or hierarchy.cap_hit


def test_hierarchy_reduces_to_max_clusters_as_a_tree():
    base = base_clusters(130)
    hierarchy = build_hierarchy(base, HashingEmbedder(), TfidfClusterNamer(), max_clusters=10)
    assert_is_tree(hierarchy, base, 10)
    assert not hierarchy.cap_hit and hierarchy.roots <= 10
    # Kura halves the roots each round: 130 -> ~65 -> ~33 -> ~17 -> ~9
    assert 3 <= hierarchy.iterations <= 6
    assert hierarchy.table["level"].max() == hierarchy.iterations
    again = build_hierarchy(base, HashingEmbedder(), TfidfClusterNamer(), max_clusters=10)
    pd.testing.assert_frame_equal(hierarchy.table, again.table)


def test_hierarchy_cap_is_recorded():
    base = base_clusters(60)
    hierarchy = build_hierarchy(base, HashingEmbedder(), TfidfClusterNamer(), max_clusters=3, max_iterations=1)
    assert hierarchy.iterations == 1 and hierarchy.cap_hit and hierarchy.roots > 3
    assert_is_tree(hierarchy, base, 3)


def test_hierarchy_small_inputs():
    embedder = HashingEmbedder()
    few = base_clusters(8)
    flat = build_hierarchy(few, embedder, TfidfClusterNamer(), max_clusters=10)
    assert embedder.calls == 0 and flat.iterations == 0 and not flat.cap_hit
    assert flat.table["is_leaf"].all() and flat.table["parent_id"].isna().all() and flat.roots == 8
    with_noise = pd.concat([few, pd.DataFrame([{"cluster_id": -1, "name": "Unclustered", "description": "n",
                                                "size": 99}])])
    one_root = build_hierarchy(with_noise, embedder, TfidfClusterNamer(), max_clusters=1)
    assert_is_tree(one_root, with_noise, 1)
    assert one_root.roots == 1 and "c-1" not in set(one_root.table["cluster_id"])
    empty = build_hierarchy(few.iloc[:0], embedder, TfidfClusterNamer())
    assert list(empty.table.columns) == list(HIERARCHY_COLUMNS) and len(empty.table) == 0
    with pytest.raises(StageError, match="max_clusters"):
        build_hierarchy(few, embedder, TfidfClusterNamer(), max_clusters=0)


# --- projection and the whole pipeline -----------------------------------------------------------


def test_project_schema_and_checks(summaries):
    vectors = embed_summaries(summaries, HashingEmbedder())
    result = cluster_summaries(summaries, vectors, KMeansMethod(n_clusters=3), TfidfClusterNamer())
    frame = project(vectors, result.assignments, PCAProjection())
    assert list(frame.columns) == ["chat_id", "x", "y", "cluster_id"]
    assert frame["x"].dtype == np.float32 and len(frame) == 150 and np.isfinite(frame[["x", "y"]]).all().all()
    assert frame["cluster_id"].tolist() == result.assignments["cluster_id"].tolist()

    class Broken:
        name = "broken"

        def fit_transform(self, v):
            out = np.zeros((len(v), 2), dtype=np.float32)
            out[7, 1] = np.inf
            return out

    with pytest.raises(StageError, match="non-finite.*chat-0007"):
        project(vectors, result.assignments, Broken())
    with pytest.raises(StageError, match="149 embeddings"):
        project(vectors[:149], result.assignments, PCAProjection())


def test_reference_pipeline_end_to_end(conversations):
    summaries = summarise(conversations, OfflineSummaryModel())
    vectors = embed_summaries(summaries, HashingEmbedder(dimension=128))
    base = cluster_summaries(summaries, vectors, HDBSCANMethod(min_cluster_size=5), TfidfClusterNamer(),
                             truth=[c.topic for c in conversations])
    assert base.quality["n_clusters"] >= 2
    hierarchy = build_hierarchy(base.clusters, HashingEmbedder(), TfidfClusterNamer(), max_clusters=2)
    assert_is_tree(hierarchy, base.clusters, 2)
    points = project(vectors, base.assignments, PCAProjection())  # UMAP itself: test_models (its JIT costs ~20 s)
    assert points.shape == (150, 4)
