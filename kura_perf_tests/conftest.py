import os
import tempfile

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
# One numba cache for every test process on this machine (each test has its own data root, where the
# product would put it): UMAP then compiles once per machine here too. A test of the data-root
# placement clears this first.
os.environ.setdefault("NUMBA_CACHE_DIR", os.path.join(tempfile.gettempdir(), "kura_perf_tests_numba"))


@pytest.fixture
def kp_home(tmp_path, monkeypatch):
    """A private data root, so tests never touch ./data."""
    home = tmp_path / "data"
    monkeypatch.setenv("KURA_PERF_HOME", str(home))
    return home
