"""Settings every asset shares: where data lives and which profiles file to read."""

from __future__ import annotations

from dagster import ConfigurableResource

from kura_perf.config import Paths
from kura_perf.profiles import Profile, get_profile


class KuraPerfResource(ConfigurableResource):
    """home: the data root (default: $KURA_PERF_HOME or ./data). profiles_file: extra profiles (TOML)."""

    home: str | None = None
    profiles_file: str | None = None

    def paths(self) -> Paths:
        from pathlib import Path

        return Paths(Path(self.home).resolve()) if self.home else Paths.from_env()

    def profile(self, name: str) -> Profile:
        return get_profile(name, self.profiles_file)
