import os

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


@pytest.fixture
def kp_home(tmp_path, monkeypatch):
    """A private data root, so tests never touch ./data."""
    home = tmp_path / "data"
    monkeypatch.setenv("KURA_PERF_HOME", str(home))
    return home
