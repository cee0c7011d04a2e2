"""`run --kura SPEC` and `versions` check the run's inputs in the main environment, but run Kura in the
spec's own one: a main environment without Kura (a Kura maintainer's checkout with kura_perf installed
without the kura extra) must not refuse them, while a plain kura-backend run there still must."""

from __future__ import annotations

import sys

import pytest

from kura_perf.errors import ProfileError
from kura_perf.pipeline.preflight import check_run_inputs
from kura_perf.settings.run import RunSettings


@pytest.fixture
def no_kura_here(monkeypatch):
    for name in [m for m in sys.modules if m == "kura" or m.startswith("kura.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "kura", None)  # `import kura` raises ImportError


def test_a_plain_kura_run_without_kura_installed_is_refused(tmp_path, no_kura_here):
    settings = RunSettings.from_env(home=tmp_path / "data")
    with pytest.raises(ProfileError, match="not installed here"):
        check_run_inputs(settings, "kura-defaults")


def test_a_kura_spec_run_does_not_need_kura_in_the_main_environment(tmp_path, no_kura_here):
    settings = RunSettings.from_env(home=tmp_path / "data")
    profile = check_run_inputs(settings, "kura-defaults", kura_in_spec_env=True)
    assert profile.backend == "kura"


def test_a_kura_spec_run_still_checks_the_profile(tmp_path, no_kura_here):
    bad = tmp_path / "bad.toml"
    bad.write_text('[kura-bad]\nbackend = "kura"\nsummary_model = "offline"\n')
    settings = RunSettings.from_env(home=tmp_path / "data", profiles_file=str(bad))
    with pytest.raises(ProfileError, match="summary_model 'offline'"):
        check_run_inputs(settings, "kura-bad", kura_in_spec_env=True)
