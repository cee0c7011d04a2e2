"""Settings every asset shares: where data lives and which profiles file to read."""

from __future__ import annotations

from dagster import ConfigurableResource

from kura_perf.config import Paths
from kura_perf.profiles import Profile, get_profile


class KuraPerfResource(ConfigurableResource):
    """home: the data root (default: $KURA_PERF_HOME or ./data). profiles_file: extra profiles (TOML).
    results: where stage outputs and records go when workers span machines (a shared path or an
    fsspec URL; default: $KURA_PERF_RESULTS, else under home)."""

    home: str | None = None
    profiles_file: str | None = None
    results: str | None = None

    def paths(self) -> Paths:
        from pathlib import Path

        paths = Paths(Path(self.home).resolve(), Paths.from_env().results) if self.home else Paths.from_env()
        return Paths(paths.root, self.results) if self.results else paths

    def profile(self, name: str) -> Profile:
        return get_profile(name, self.profiles_file)
