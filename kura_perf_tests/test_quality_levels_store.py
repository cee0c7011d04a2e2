"""Per-level quality rows travel with the stage record into the store; numba's cache sits under the data root."""

import os

import numpy as np
import pytest

from kura_perf.backends.reference import ReferenceBackend
from kura_perf.models import jit_cache
from kura_perf.pipeline.runner import StageRun, run_stage
from kura_perf.profiles import Profile
from kura_perf.settings.paths import Paths
from kura_perf.settings.run import RunSettings
from kura_perf.store import query

STAGES_TO_META = ("conversations", "summaries", "embeddings", "clusters", "meta_clusters")


@pytest.mark.slow
def test_level_rows_are_written_per_level_beside_the_stage_records(kp_home, monkeypatch):
    monkeypatch.delenv(jit_cache.NUMBA_CACHE_ENV, raising=False)
    paths = Paths.from_env()
    # k-means k = 10 base clusters at 100, reduced to at most 3 roots: three levels, no UMAP needed.
    profile = Profile(name="levels", embedding_backend="torch", clustering="kmeans", clustering_params={"clusters_per_group": 10},
                      meta_max_clusters=3, projection="pca")
    backend = ReferenceBackend(profile, RunSettings.from_env())
    records = {}
    try:
        for stage in STAGES_TO_META:
            records[stage] = run_stage(StageRun(stage, profile, "100", run_id="r-levels", backend=backend,
                                                settings=RunSettings.from_env(paths=paths)))
    finally:
        backend.close()
    rows = query(paths.metrics, "SELECT * FROM quality_levels WHERE run_id = 'r-levels' ORDER BY stage, level")
    clusters, meta = rows[rows["stage"] == "clusters"], rows[rows["stage"] == "meta_clusters"]
    assert clusters["level"].tolist() == [0] and clusters["n_clusters"].tolist() == [10]
    assert set(clusters["record_id"]) == {records["clusters"].record_id}
    levels = int(__import__("json").loads(records["meta_clusters"].extra)["levels"])
    assert meta["level"].tolist() == list(range(levels)) and levels >= 2
    assert meta["n_clusters"].is_monotonic_decreasing and meta["n_clusters"].iloc[-1] <= 3
    assert meta["is_topic_level"].sum() == 1 and (meta["true_topics"] > 0).all()
    assert meta["ari"].notna().all() and meta["homogeneity"].between(0, 1).all()
    assert meta.iloc[0]["ari"] == pytest.approx(clusters.iloc[0]["ari"])  # level 0 scored the same way twice
    assert (meta["profile_hash"] == profile.content_hash()).all() and meta["host_fingerprint"].notna().all()
    view = query(paths.metrics, "SELECT * FROM quality_by_level WHERE profile = 'levels'")
    assert view["stage"].eq("meta_clusters").all() and view["level"].tolist() == list(range(levels))
    # The record says whether numba compiled in the stage, and where its cache is.
    extra = __import__("json").loads(records["clusters"].extra)
    assert extra["jit"]["cache_dir"] == str(jit_cache.cache_dir(paths.root).resolve())
    assert records["clusters"].jit_compiled is False  # k-means: no numba code ran
    assert records["meta_clusters"].quality_levels and "quality_levels_s" in extra


def test_numba_cache_lands_under_the_data_root(tmp_path, monkeypatch):
    monkeypatch.delenv(jit_cache.NUMBA_CACHE_ENV, raising=False)
    root = tmp_path / "data"
    chosen = jit_cache.configure(root)
    assert chosen == (root / "cache" / "numba").resolve() and os.environ[jit_cache.NUMBA_CACHE_ENV] == str(chosen)
    import numba

    @numba.njit(cache=True)
    def add_one(x):
        return x + 1

    watch = jit_cache.JitWatch()
    assert add_one(np.int64(1)) == 2
    assert list(chosen.rglob("*.nbi")), "numba wrote no cache index under the data root"
    assert watch.report().cache_files_added >= 1
    # A user's own NUMBA_CACHE_DIR wins over the data root.
    monkeypatch.setenv(jit_cache.NUMBA_CACHE_ENV, str(tmp_path / "mine"))
    assert jit_cache.configure(root) == tmp_path / "mine"
