"""The one model cache (kura_perf/models/cache.py): one load per key per process, a new load per new key."""

from __future__ import annotations

import threading
import time
import uuid
from pathlib import Path

import pytest

from kura_perf.models import cache
from kura_perf.settings.paths import Paths


def _kind() -> str:
    return f"test-{uuid.uuid4().hex[:8]}"  # a kind of its own: no other test's entries


def test_two_users_of_one_key_get_the_same_object_and_one_load():
    kind, loads = _kind(), []

    def load():
        loads.append(1)
        return object()

    first = cache.shared(kind, ("weights", 32), load)
    second = cache.shared(kind, ("weights", 32), load)
    assert first is second
    assert len(loads) == 1 and cache.load_count(kind, ("weights", 32)) == 1


def test_a_different_key_or_kind_loads_a_different_object():
    kind = _kind()
    a = cache.shared(kind, "a", object)
    b = cache.shared(kind, "b", object)
    other = cache.shared(_kind(), "a", object)
    assert a is not b and a is not other and b is not other
    assert cache.load_count(kind, "a") == cache.load_count(kind, "b") == 1


def test_threads_asking_at_once_load_once():
    kind, loads, started = _kind(), [], threading.Barrier(8)

    def load():
        loads.append(1)
        time.sleep(0.2)  # a slow load: the other threads ask while it runs
        return object()

    got: list[object] = []

    def ask():
        started.wait(5)
        got.append(cache.shared(kind, "k", load))

    threads = [threading.Thread(target=ask) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert len(got) == 8 and all(g is got[0] for g in got)
    assert len(loads) == 1


def test_a_failed_load_caches_nothing():
    kind = _kind()

    def broken():
        raise RuntimeError("no weights")

    with pytest.raises(RuntimeError):
        cache.shared(kind, "k", broken)
    assert cache.load_count(kind, "k") == 0
    model = cache.shared(kind, "k", object)
    assert cache.shared(kind, "k", object) is model


def test_keep_bounds_a_kind_dropping_the_least_recently_used():
    kind = _kind()
    a = cache.shared(kind, "a", object, keep=2)
    cache.shared(kind, "b", object, keep=2)
    assert cache.shared(kind, "a", object, keep=2) is a  # a is now the most recent
    cache.shared(kind, "c", object, keep=2)  # drops b
    assert cache.shared(kind, "a", object, keep=2) is a
    cache.shared(kind, "b", object, keep=2)
    assert cache.load_count(kind, "b") == 2 and cache.load_count(kind, "a") == 1


def test_the_simulator_projection_is_made_once_per_model_and_dimension():
    from kura_perf.simulator import vectors

    small = vectors._projection("text-embedding-3-small", 1536)
    assert vectors._projection("text-embedding-3-small", 1536) is small
    assert vectors._projection("text-embedding-3-large", 3072) is not small
    assert cache.load_count(vectors.PROJECTION_KIND, ("text-embedding-3-small", 1536)) == 1


def test_sentence_transformer_users_share_the_cached_model():
    from kura_perf.models.sentence_transformer import MODEL_KIND, SentenceTransformerEmbedding, default_model_path

    path = default_model_path()
    model = SentenceTransformerEmbedding(batch_size=4)._model()
    assert SentenceTransformerEmbedding(batch_size=16)._model() is model
    assert cache.shared(MODEL_KIND, path, lambda: pytest.fail("loaded again")) is model
    assert cache.load_count(MODEL_KIND, path) == 1


def test_derived_models_live_under_the_data_root_unless_shared(tmp_path, monkeypatch):
    from kura_perf.settings.environment import MODEL_CACHE_ENV
    from kura_perf.settings.run import RunSettings

    monkeypatch.delenv(MODEL_CACHE_ENV, raising=False)
    assert cache.derived_models_dir(tmp_path) == tmp_path / "model_cache"
    assert Paths(tmp_path).model_cache == tmp_path / "model_cache"
    assert cache.onnx_exports_dir(Paths(tmp_path).model_cache) == tmp_path / "model_cache" / "onnx"
    assert RunSettings.from_env(home=tmp_path).model_cache == tmp_path.resolve() / "model_cache"
    monkeypatch.setenv(MODEL_CACHE_ENV, str(tmp_path / "shared"))
    assert Paths(tmp_path / "other").model_cache == tmp_path / "other" / "model_cache"  # a Paths reads no environment
    assert RunSettings.from_env(home=tmp_path / "other").model_cache == Path(tmp_path / "shared")


def test_kuras_sentence_transformer_is_loaded_once_per_path_and_batch_size():
    pytest.importorskip("kura.embedding")
    from kura_perf.backends.kura_models import KURA_ST_KIND, _sentence_transformer
    from kura_perf.models.sentence_transformer import default_model_path

    path = default_model_path()
    model = _sentence_transformer(path, 32)
    assert _sentence_transformer(path, 32) is model
    other = _sentence_transformer(path, 7)
    assert other is not model and other._model_batch_size == 7
    assert cache.load_count(KURA_ST_KIND, (path, 32)) == cache.load_count(KURA_ST_KIND, (path, 7)) == 1
