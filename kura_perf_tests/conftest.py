import os
import tempfile

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
# One numba cache for every test process on this machine (each test has its own data root, where the
# product would put it): UMAP then compiles once per machine here too. A test of the data-root
# placement clears this first.
os.environ.setdefault("NUMBA_CACHE_DIR", os.path.join(tempfile.gettempdir(), "kura_perf_tests_numba"))


@pytest.fixture(scope="session", autouse=True)
def shared_model_cache(tmp_path_factory):
    """One ONNX export for the whole session (and its subprocesses), not one per test data root."""
    from kura_perf.settings.environment import MODEL_CACHE_ENV

    if os.environ.get(MODEL_CACHE_ENV):
        yield os.environ[MODEL_CACHE_ENV]
        return
    folder = tmp_path_factory.mktemp("shared") / "data" / "model_cache"  # as if under a data root
    folder.mkdir(parents=True)
    os.environ[MODEL_CACHE_ENV] = str(folder)
    try:
        yield str(folder)
    finally:
        os.environ.pop(MODEL_CACHE_ENV, None)


@pytest.fixture
def kp_home(tmp_path, monkeypatch):
    """A private data root, so tests never touch ./data."""
    home = tmp_path / "data"
    monkeypatch.setenv("KURA_PERF_HOME", str(home))
    return home
