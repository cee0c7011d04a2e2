"""The resource every asset shares: the run's settings (kura_perf/settings/__init__.py), as Dagster config.

It is one of the edges that build RunSettings (with the CLI and the code location,
`kura_perf/definitions.py`): `settings()` builds them with `RunSettings.from_env`, the constructor the
CLI uses, so a field left unset here is read from the environment exactly as the CLI reads it; the CLI
hands its own settings over with `from_settings`. They are built once per resource instance (Dagster
initialises one per run process), not on every call: a run sees one set of settings from start to end,
and the environment is not read again per asset, sensor tick or `paths()` call."""

import dataclasses
from pathlib import Path
from typing import Optional

from dagster import ConfigurableResource
from pydantic import PrivateAttr

from kura_perf.profiles import Profile
from kura_perf.settings.paths import Paths
from kura_perf.settings.run import RunSettings


class KuraPerfResource(ConfigurableResource):
    """home: the data root (default: $KURA_PERF_HOME or ./data). profiles_file: extra profiles (TOML;
    default: $KURA_PERF_PROFILES). results: where stage outputs and records go when workers span
    machines (a shared path or an fsspec URL; default: $KURA_PERF_RESULTS, else under home). database:
    the DuckDB views file (default: $KURA_PERF_DB, else under home). The other fields are RunSettings'
    (each None: from the environment, as kura_perf/settings/environment.py lists). The alert webhook is
    no config field (its URL often embeds a token the UI would show): $KURA_PERF_ALERT_WEBHOOK."""

    home: Optional[str] = None
    profiles_file: Optional[str] = None
    results: Optional[str] = None
    database: Optional[str] = None
    meter: Optional[bool] = None
    simulator_url: Optional[str] = None
    model_cache: Optional[str] = None
    api_key_env: Optional[str] = None
    base_url_env: Optional[str] = None
    backend_wrapper: Optional[str] = None
    nightly: Optional[str] = None
    # The CLI's word that a person watches its terminal (RunSettings.progress_bar); None: plain lines.
    progress_bar: Optional[bool] = None
    api_log: Optional[str] = None  # RunSettings.api_log: the request log for `kura-perf calibrate`
    # The Kura spec this run measures (RunSettings.kura_spec): set by `kura-perf run --kura` in the spec's environment.
    kura_spec: Optional[str] = None

    _settings: Optional[RunSettings] = PrivateAttr(default=None)  # built on first use, then kept

    @classmethod
    def from_settings(cls, settings: RunSettings) -> "KuraPerfResource":
        """The resource whose settings() gives back `settings` (what the CLI runs its assets with)."""
        paths = settings.paths
        return cls(home=str(paths.root), results=paths.results,
                   database=str(paths.database_file) if paths.database_file else None,
                   profiles_file=settings.profiles_file, meter=settings.meter, simulator_url=settings.simulator_url,
                   model_cache=str(settings.model_cache) if settings.model_cache else None,
                   api_key_env=settings.api_key_env, base_url_env=settings.base_url_env,
                   backend_wrapper=settings.backend_wrapper, nightly=settings.nightly,
                   progress_bar=settings.progress_bar, api_log=settings.api_log, kura_spec=settings.kura_spec)

    def _base(self) -> RunSettings:
        if self._settings is None:
            settings = RunSettings.from_env(
                home=self.home, results=self.results, profiles_file=self.profiles_file, meter=self.meter,
                simulator_url=self.simulator_url, model_cache=self.model_cache, api_key_env=self.api_key_env,
                base_url_env=self.base_url_env, backend_wrapper=self.backend_wrapper, nightly=self.nightly,
                progress_bar=self.progress_bar, api_log=self.api_log, kura_spec=self.kura_spec)
            if self.database:
                settings = settings.replace(paths=dataclasses.replace(settings.paths, database_file=Path(self.database)))
            self._settings = settings
        return self._settings

    def settings(self, **overrides) -> RunSettings:
        """This resource's settings; `overrides` (not None) replace fields, e.g. the simulator_url of
        the simulator the api_simulator resource started for the run."""
        changes = {key: value for key, value in overrides.items() if value is not None}
        return self._base().replace(**changes) if changes else self._base()

    def paths(self) -> Paths:
        return self._base().paths

    def profile(self, name: str) -> Profile:
        return self._base().profile(name)
