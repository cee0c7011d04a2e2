"""The resource every asset shares: the run's settings (kura_perf/settings/__init__.py), as Dagster config.

It owns the RunSettings of a run: `settings()` builds them with `RunSettings.from_env`, the same
constructor the CLI uses, so a field left unset here is read from the environment exactly as the
CLI reads it; the CLI hands its own settings over with `from_settings`."""

from typing import Optional

from dagster import ConfigurableResource

from kura_perf.settings.paths import Paths
from kura_perf.profiles import Profile
from kura_perf.settings import RunSettings


class KuraPerfResource(ConfigurableResource):
    """home: the data root (default: $KURA_PERF_HOME or ./data). profiles_file: extra profiles (TOML;
    default: $KURA_PERF_PROFILES). results: where stage outputs and records go when workers span
    machines (a shared path or an fsspec URL; default: $KURA_PERF_RESULTS, else under home). The other
    fields are RunSettings' (each None: from the environment, as settings.py lists)."""

    home: Optional[str] = None
    profiles_file: Optional[str] = None
    results: Optional[str] = None
    meter: Optional[bool] = None
    simulator_url: Optional[str] = None
    model_cache: Optional[str] = None
    api_key_env: Optional[str] = None
    base_url_env: Optional[str] = None
    backend_wrapper: Optional[str] = None

    @classmethod
    def from_settings(cls, settings: RunSettings) -> "KuraPerfResource":
        """The resource whose settings() gives back `settings` (what the CLI runs its assets with)."""
        return cls(home=str(settings.paths.root), results=settings.paths.results,
                   profiles_file=settings.profiles_file, meter=settings.meter, simulator_url=settings.simulator_url,
                   model_cache=str(settings.model_cache) if settings.model_cache else None,
                   api_key_env=settings.api_key_env, base_url_env=settings.base_url_env,
                   backend_wrapper=settings.backend_wrapper)

    def settings(self, **overrides) -> RunSettings:
        """This resource's settings; `overrides` (not None) replace fields, e.g. the simulator_url of
        the simulator the api_simulator resource started for the run."""
        fields = {"profiles_file": self.profiles_file, "meter": self.meter, "simulator_url": self.simulator_url,
                  "model_cache": self.model_cache, "api_key_env": self.api_key_env,
                  "base_url_env": self.base_url_env, "backend_wrapper": self.backend_wrapper}
        fields.update({key: value for key, value in overrides.items() if value is not None})
        return RunSettings.from_env(home=self.home, results=self.results, **fields)

    def paths(self) -> Paths:
        return self.settings().paths

    def profile(self, name: str) -> Profile:
        return self.settings().profile(name)
