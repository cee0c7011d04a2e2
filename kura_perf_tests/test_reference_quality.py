"""The reference pipeline's quality choices (issue: topics in real conversations at every scale):
what it embeds, HDBSCAN's size chosen from the data, deterministic embeddings, meta-clusters by members,
and the same labels from the same data in two data roots."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
from sklearn.datasets import make_blobs
from sklearn.metrics import adjusted_rand_score

from kura_perf.errors import KuraPerfError
from kura_perf.models.clustering import UMAPHDBSCANMethod
from kura_perf.models.size_selection import candidate_sizes, choose_cluster_size
from kura_perf.profiles import get_profile, parse_profiles
from kura_perf.stages.clusters import cluster_centroids
from kura_perf.stages.meta_clusters import build_hierarchy
from kura_perf.stages.summaries import embed_text

# -- what is embedded -----------------------------------------------------------------------------

FIELDS = {"summary": "The user wants to swap salt for baking soda.", "request": "r", "task": "t",
          "languages": ["english"], "assistant_errors": []}


def test_the_reference_embeds_the_summary_text_and_kura_its_own_layout():
    assert embed_text(FIELDS, "summary") == FIELDS["summary"]
    assert embed_text(FIELDS, "kura-template").startswith("<summary>The user wants")
    assert get_profile("offline").embed_text == "summary"
    assert get_profile("offline-previous").embed_text == "kura-template"
    assert get_profile("kura-tier5").embed_text == "kura-template"  # what Kura embeds, resolved


def test_a_kura_profile_cannot_claim_to_embed_anything_else():
    with pytest.raises(KuraPerfError, match="embed_text 'summary': the kura backend"):
        parse_profiles({"k": {"backend": "kura", "embed_text": "summary"}}, "test.toml")
    with pytest.raises(KuraPerfError, match="meta_grouping 'centroids': the kura backend"):
        parse_profiles({"k": {"backend": "kura", "meta_grouping": "centroids"}}, "test.toml")


# -- HDBSCAN's size chosen from the data ---------------------------------------------------------------

def test_candidate_sizes_are_a_geometric_grid_up_to_the_share():
    assert candidate_sizes(1000, 5, 1.5, 0.1) == [5, 8, 11, 17, 25, 38, 57, 85]
    assert candidate_sizes(30, 5, 1.25, 0.1) == [5]  # the floor even when the share is below it
    with pytest.raises(KuraPerfError):
        candidate_sizes(100, 5, 1.0, 0.1)


@pytest.mark.parametrize("topics, per_topic", [(30, 40), (6, 400)])
def test_the_chosen_size_finds_topics_of_either_size(topics, per_topic):
    """Many small topics and a few large ones: no one fixed size serves both; the validity choice does."""
    points, truth = make_blobs(n_samples=topics * per_topic, centers=topics, n_features=5, cluster_std=0.4,
                               center_box=(-20, 20), random_state=3)
    choice = choose_cluster_size(points, floor=5, min_samples=5, step=1.25, max_share=0.1)
    found = int(choice.labels.max()) + 1
    assert found == topics, (found, choice.size, choice.candidates)
    assert adjusted_rand_score(truth, choice.labels) > 0.95
    assert choice.size in [c["size"] for c in choice.candidates]
    best = max(c["validity"] for c in choice.candidates)
    near = [c["size"] for c in choice.candidates if c["validity"] >= best - 0.02]
    assert choice.size == min(near)  # the finest of the near-best


def test_a_fixed_size_that_suits_one_shape_fails_the_other():
    """Why the size is chosen: 40 small topics of 40 cannot be found with a size fit for 400-member ones."""
    points, _ = make_blobs(n_samples=1600, centers=40, n_features=5, cluster_std=0.4, center_box=(-20, 20),
                           random_state=3)
    from kura_perf.models.clustering import HDBSCANMethod

    big = HDBSCANMethod(min_cluster_size=200, min_samples=5).fit_predict(points)
    assert int(big.max()) + 1 < 40


def test_umap_hdbscan_reports_its_choice_and_keeps_a_share_profile_fixed():
    method = UMAPHDBSCANMethod(random_state=0)
    assert method.params["size_selection"] == "validity" and method.params["assign_noise"] is True
    legacy = UMAPHDBSCANMethod(min_cluster_share=0.01)  # a profile written for the previous rule
    assert legacy.size_selection == "fixed"
    with pytest.raises(KuraPerfError, match="would override it"):
        UMAPHDBSCANMethod(size_selection="validity", min_cluster_share=0.01)
    points, truth = make_blobs(n_samples=600, centers=6, n_features=20, cluster_std=0.5, random_state=1)
    labels = method.fit_predict(points)
    report = method.fit_report()
    assert report["chosen_min_cluster_size"] in [c["size"] for c in report["size_candidates"]]
    assert 0.0 <= report["hdbscan_noise_share"] <= 1.0
    assert (labels >= 0).all()  # noise joined its nearest cluster
    assert adjusted_rand_score(truth, labels) > 0.9


# -- meta-clusters by their members ----------------------------------------------------------------

class _NoEmbedder:
    name, dimension = "none", 0

    def embed(self, texts):  # pragma: no cover - must not be called when grouping by centroids
        raise AssertionError("grouping by centroids must not embed names")


class _FirstWordNamer:
    name = "first-word"

    def name_clusters(self, groups):
        return [(group[0].split()[1], "d") for group in groups]


def test_meta_clusters_group_by_members_not_by_misleading_names():
    """Four base clusters in two obvious groups of vectors; their names cross the groups."""
    rng = np.random.default_rng(0)
    centres = np.array([[1.0, 0, 0], [0, 1.0, 0]])
    labels = np.repeat([0, 1, 2, 3], 25)
    group_of = {0: 0, 1: 1, 2: 0, 3: 1}
    vectors = np.stack([centres[group_of[c]] + rng.normal(0, 0.05, 3) for c in labels])
    clusters = pd.DataFrame({"cluster_id": [0, 1, 2, 3], "name": ["apple", "apple", "pear", "pear"],
                             "description": ["x"] * 4, "size": [25] * 4})
    hierarchy = build_hierarchy(clusters, _NoEmbedder(), _FirstWordNamer(), max_clusters=2,
                                base_vectors=cluster_centroids(vectors, labels))
    table = hierarchy.table
    parent_of = dict(zip(table["cluster_id"], table["parent_id"]))

    def root(node):
        while parent_of[node] is not None:
            node = parent_of[node]
        return node

    assert hierarchy.roots == 2
    assert root("c0") == root("c2") and root("c1") == root("c3") and root("c0") != root("c1")
    assert "vector" not in table.columns


def test_cluster_centroids_are_unit_mean_vectors_without_noise():
    vectors = np.array([[2.0, 0], [4.0, 0], [0, 3.0], [9.0, 9.0]])
    centroids = cluster_centroids(vectors, np.array([0, 0, 1, -1]))
    np.testing.assert_allclose(centroids, [[1.0, 0.0], [0.0, 1.0]], atol=1e-6)


# -- deterministic embeddings ------------------------------------------------------------------------

@pytest.fixture(scope="module")
def int8_one_at_a_time(shared_model_cache):
    pytest.importorskip("onnxruntime")
    from pathlib import Path

    from kura_perf.backends.model_factory import ModelFactory
    from kura_perf.settings.run import RunSettings

    root = Path(shared_model_cache).parent
    settings = RunSettings.from_env(home=str(root))  # the session's model cache: one export per session
    model = ModelFactory(get_profile("offline"), settings).embedding_model()
    model.prepare()
    return model


def test_a_texts_vector_does_not_depend_on_its_batch_mates(int8_one_at_a_time):
    assert int8_one_at_a_time.batch_size == 1  # the offline profile's embedding_batch_size
    a = "How do I reset my online banking password?"
    b = "Plan five days in Morocco with a wheelchair user, please, including food and rest stops."
    first = int8_one_at_a_time.embed([a, b, "hi"])
    second = int8_one_at_a_time.embed(["a much longer text " * 20, b, "x", a])
    np.testing.assert_array_equal(first[0], second[3])
    np.testing.assert_array_equal(first[1], second[1])


def _run(home, *args):
    env = {**os.environ, "KURA_PERF_HOME": str(home)}
    out = subprocess.run([sys.executable, "-m", "kura_perf.cli.main", "run", "--scale", "1k", "--profile", "offline",
                          "--stages", "conversations", "summaries", "embeddings", "clusters", *args],
                         capture_output=True, text=True, env=env, timeout=900)
    assert out.returncode == 0, out.stderr[-2000:]


@pytest.mark.slow
def test_the_same_partition_gives_the_same_clusters_in_two_data_roots(tmp_path):
    first, second = tmp_path / "one", tmp_path / "two"
    _run(first)
    _run(second)
    def read(home):
        return pd.read_parquet(home / "storage" / "offline" / "1k" / "clusters.assignments.parquet")

    a, b = read(first), read(second)
    assert a["cluster_id"].nunique() > 10
    pd.testing.assert_frame_equal(a, b)
    va = np.load(first / "storage" / "offline" / "1k" / "embeddings.npy")
    vb = np.load(second / "storage" / "offline" / "1k" / "embeddings.npy")
    np.testing.assert_array_equal(va, vb)
