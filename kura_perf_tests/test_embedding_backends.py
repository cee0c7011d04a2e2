"""Embedding backends: torch, onnx, onnx-int8 agree, are refused when they do not, are cached under the
data root and reused, and every record names its backend and carries the model-only throughput.

One export per module (a few seconds each): the fixtures share a cache in a module temp folder.
"""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from kura_perf.errors import ProfileError
from kura_perf.models.onnx_export import MIN_COSINE, EmbeddingBackendError, ExportCache, check_texts
from kura_perf.profiles import get_profile, parse_profiles
from kura_perf.settings.paths import Paths

pytest.importorskip("onnxruntime")


@pytest.fixture(scope="module")
def torch_model():
    from kura_perf.models.sentence_transformer import SentenceTransformerEmbedding

    return SentenceTransformerEmbedding(batch_size=32)


@pytest.fixture(scope="module")
def torch_reference(torch_model):
    """torch's vectors, computed once per distinct text list (every export check embeds the same sample)."""
    memo: dict[tuple, np.ndarray] = {}

    def reference(texts):
        key = tuple(texts)
        if key not in memo:
            memo[key] = torch_model.bare_encode(list(texts))
        return memo[key]

    return reference


@pytest.fixture(scope="module")
def data_root(shared_model_cache, tmp_path_factory):
    """The data root whose model_cache is the session's shared one (conftest): one export per session."""
    from pathlib import Path

    cache = Path(shared_model_cache)
    return cache.parent if cache.name == "model_cache" else tmp_path_factory.mktemp("embed") / "data"


def make_cache(root, reference, **kwargs) -> ExportCache:
    from kura_perf.models.onnx_embedding import OnnxEncoder, max_seq_length
    from kura_perf.models.sentence_transformer import default_model_path

    path = default_model_path()
    length = max_seq_length(path)
    return ExportCache(root, path, length, reference=reference,
                       encoder_factory=lambda file: OnnxEncoder(file, path, length), **kwargs)


@pytest.fixture(scope="module")
def shared_cache(data_root, torch_reference):
    """Both exports, made once for the module under <data root>/model_cache/onnx (as the factory does)."""
    cache = make_cache(data_root / "model_cache" / "onnx", torch_reference)
    for backend in ("onnx", "onnx-int8"):
        cache.get(backend)
    return cache


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["onnx", "onnx-int8"])
def test_backend_round_trips_and_agrees_with_torch(shared_cache, torch_reference, backend):
    from kura_perf.models.onnx_embedding import OnnxEmbedding

    model = OnnxEmbedding(backend, shared_cache, batch_size=7)
    info = model.prepare()
    texts = check_texts()[::-1]  # another order and batch size than the export check
    vectors = model.embed(texts)
    assert vectors.shape == (len(texts), 384) and vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-4)
    # Row i against torch's row i: also proves the rows come back in input order after the length sort.
    cosine = (vectors * torch_reference(check_texts())[::-1]).sum(axis=1)
    assert cosine.min() >= MIN_COSINE[backend]
    assert info["onnx_check"]["min_cosine"] >= MIN_COSINE[backend] and info["onnx_check"]["n"] == len(texts)
    assert model.embed([]).shape == (0, 384)
    np.testing.assert_array_equal(model.embed(texts), vectors)  # deterministic
    # fp32 gives a text the same vector alone as in a batch; dynamic int8 quantizes activations with one
    # scale per batch, so a text's vector moves a little with its batch-mates (still above the threshold).
    alone = float(model.embed([texts[3]])[0] @ vectors[3])
    assert alone > (0.9999 if backend == "onnx" else MIN_COSINE[backend])


def test_cache_is_under_the_data_root_and_reused(shared_cache, data_root, torch_reference):
    again = make_cache(data_root / "model_cache" / "onnx", torch_reference)
    for backend in ("onnx", "onnx-int8"):
        export = again.get(backend)
        assert not export.exported_now
        assert export.path.is_relative_to(data_root / "model_cache")
        assert export.manifest["backend"] == backend and export.manifest["versions"]["onnxruntime"]
    assert again.exports_made == 0
    assert shared_cache.entry_dir("onnx") != shared_cache.entry_dir("onnx-int8")
    # No temp folders left behind by the exports.
    assert not [p for p in shared_cache.root.iterdir() if p.name.startswith(".")]


def test_a_threshold_above_one_refuses_with_the_figures(shared_cache, torch_reference):
    strict = make_cache(shared_cache.root, torch_reference, min_cosine=1.01)
    with pytest.raises(EmbeddingBackendError) as refused:
        strict.get("onnx-int8")
    message = str(refused.value)
    assert "'onnx-int8'" in message and "min cosine" in message and "mean" in message and "1.0100" in message
    assert strict.exports_made == 0


def _perturbing_exporter(source_file):
    """An export whose word embeddings were shifted: runs fine, disagrees with torch."""

    def exporter(model_path, target, max_seq_length):
        import onnx
        from onnx import numpy_helper

        graph = onnx.load(str(source_file))
        for init in graph.graph.initializer:
            if "word_embeddings" in init.name:
                weights = numpy_helper.to_array(init).copy()
                weights += np.random.default_rng(0).normal(0, 0.08, weights.shape).astype(weights.dtype)
                init.CopyFrom(numpy_helper.from_array(weights, init.name))
                break
        else:
            raise AssertionError("no word_embeddings initializer in the export")
        onnx.save(graph, str(target))

    return exporter


def test_a_disagreeing_export_is_refused_and_not_cached(shared_cache, torch_reference, tmp_path):
    cache = make_cache(tmp_path / "onnx", torch_reference, exporter=_perturbing_exporter(shared_cache.get("onnx").path))
    with pytest.raises(EmbeddingBackendError) as refused:
        cache.get("onnx")
    message = str(refused.value)
    assert "disagrees with torch" in message and "'onnx'" in message and "0.9990" in message
    assert not cache.entry_dir("onnx").exists()
    assert [p.name for p in (tmp_path / "onnx").iterdir() if not p.name.endswith(".lock")] == []


def test_a_failing_export_is_refused_with_the_cause(torch_reference, tmp_path):
    def broken(model_path, target, max_seq_length):
        raise RuntimeError("exporter exploded")

    with pytest.raises(EmbeddingBackendError, match="torch.onnx failed: RuntimeError: exporter exploded"):
        make_cache(tmp_path / "onnx", torch_reference, exporter=broken).get("onnx")
    # An export that writes something onnxruntime cannot load is refused too.
    garbage = make_cache(tmp_path / "onnx2", torch_reference, exporter=lambda m, t, n: t.write_bytes(b"not a model"))
    with pytest.raises(EmbeddingBackendError, match="onnxruntime cannot run the exported model"):
        garbage.get("onnx")


def test_a_changed_cache_file_is_refused(shared_cache, torch_reference, tmp_path):
    entry = shared_cache.entry_dir("onnx-int8")
    copy_root = tmp_path / "onnx"
    shutil.copytree(entry, copy_root / entry.name)
    model_file = copy_root / entry.name / "model.onnx"
    data = bytearray(model_file.read_bytes())
    data[len(data) // 2] ^= 0xFF
    model_file.write_bytes(bytes(data))
    with pytest.raises(EmbeddingBackendError, match="changed since it was checked"):
        make_cache(copy_root, torch_reference).get("onnx-int8")


def test_unknown_variant_is_refused(shared_cache):
    with pytest.raises(EmbeddingBackendError, match="no ONNX export for embedding_backend 'torch'"):
        shared_cache.get("torch")


def test_profiles_resolve_and_refuse_embedding_backends():
    from kura_perf.profiles.schema import DEFAULT_EMBEDDING_BACKEND

    assert get_profile("offline").embedding_backend == DEFAULT_EMBEDDING_BACKEND
    assert get_profile("torch").embedding_backend == "torch"
    assert get_profile("kura").embedding_backend == "torch"
    assert get_profile("simulated-openai").embedding_backend == "api"
    assert get_profile("offline").content_hash() != get_profile("torch").content_hash()
    parsed = parse_profiles({"mine": {"embedding_backend": "onnx"}}, "x.toml")
    assert parsed["mine"].embedding_backend == "onnx"
    with pytest.raises(ProfileError, match="embedding_backend.*'nope'|'nope'.*embedding_backend"):
        parse_profiles({"bad": {"embedding_backend": "nope"}}, "x.toml")
    with pytest.raises(ProfileError, match="kura backend runs Kura's own"):
        parse_profiles({"bad": {"backend": "kura", "embedding_backend": "onnx"}}, "x.toml")
    with pytest.raises(ProfileError, match="is an API model"):
        parse_profiles({"bad": {"embedding_model": "openai:text-embedding-3-small", "embedding_backend": "onnx-int8"}},
                       "x.toml")


def test_calibration_sample_is_fixed_and_spread():
    from kura_perf.models.calibration import calibration_sample

    texts = [f"t{i}" for i in range(1000)]
    sample = calibration_sample(texts, 128)
    assert len(sample) == 128 and sample == calibration_sample(texts, 128)
    assert sample[0] == "t0" and sample[-1] == "t999"
    assert calibration_sample(texts[:10], 128) == texts[:10]


def test_records_name_the_backend_and_carry_model_only_throughput(shared_cache, data_root, monkeypatch):
    from kura_perf.defs.metadata import stage_metadata
    from kura_perf.pipeline.runner import StageRun, run_stage

    monkeypatch.delenv("KURA_PERF_MODEL_CACHE", raising=False)  # the runner finds the export under the data root
    profile = get_profile("offline").model_copy(update={"embedding_backend": "onnx-int8", "name": "embed-test"})
    from kura_perf.settings.run import RunSettings

    paths = Paths(data_root)
    records = {stage: run_stage(StageRun(stage, profile, "100", run_id="r1", settings=RunSettings.from_env(paths=paths)))
               for stage in ("conversations", "summaries", "embeddings")}
    embeddings = records["embeddings"]
    assert embeddings.status == "success"
    assert all(r.embedding_backend == "onnx-int8" for r in records.values())
    assert embeddings.model_sample_n == 100 and embeddings.model_items_per_s > 0
    assert records["summaries"].model_items_per_s is None
    import json

    extra = json.loads(embeddings.extra)
    assert extra["embedding_backend"] == "onnx-int8" and extra["onnx_exported_now"] is False
    meta = stage_metadata(embeddings)
    assert meta["embedding_backend"] == "onnx-int8"
    assert meta["model_items_per_s"].value > 0 and meta["stage_vs_model"].value > 0  # typed: MetadataValue.float
    # The schema carries the new columns, so the store's views expose them.
    from kura_perf.store.schema import STAGE_RUNS

    assert {"embedding_backend", "model_items_per_s", "model_sample_n"} <= set(STAGE_RUNS.names)


def test_a_refused_backend_is_a_recorded_stage_failure(shared_cache, data_root, monkeypatch):
    monkeypatch.delenv("KURA_PERF_MODEL_CACHE", raising=False)
    from kura_perf.backends.reference import ReferenceBackend
    from kura_perf.pipeline.runner import StageRun, run_stage

    profile = get_profile("offline").model_copy(update={"embedding_backend": "onnx-int8", "name": "embed-test"})
    paths = Paths(data_root)
    from kura_perf.settings.run import RunSettings

    settings = RunSettings.from_env(paths=paths)
    backend = ReferenceBackend(profile, settings, onnx_min_cosine=1.01)
    with pytest.raises(EmbeddingBackendError):
        run_stage(StageRun("embeddings", profile, "100", run_id="r2", settings=settings, backend=backend))
    from kura_perf.checks.records import stored_record

    failed = stored_record(paths, "r2", "embeddings").as_dict()
    assert failed["status"] == "failed" and failed["error_type"] == "EmbeddingBackendError"
    assert "disagrees with torch" in failed["error_message"] and failed["embedding_backend"] == "onnx-int8"
