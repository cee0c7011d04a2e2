"""How a run is set up: one frozen object, built from the environment once, at the edge, and then
passed down explicitly (CLI or Dagster resource -> runner -> backend -> model factory -> models).

The edges (the CLI, the Dagster resource `defs/resources.py` and code location `definitions.py`) build
it with `RunSettings.from_env`, which reads every variable through kura_perf/settings/environment.py
(the one module that reads kura_perf's settings from the environment; it lists each variable, its
meaning and default). Below the edges a RunSettings is a required argument: a default read from the
environment deep down would make a worker's settings differ from its caller's without anyone seeing.
Nothing in the package writes these settings to the environment (the few variables third-party
libraries can only read from the environment are set in `kura_perf/settings/third_party_env.py`).
Credentials are held by the NAME of their environment variable only: the key itself is read where a
client is built, never stored here. No Dagster import here: the core runs without Dagster.
"""

from __future__ import annotations

import dataclasses
import importlib
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kura_perf.errors import KuraPerfError
from kura_perf.profiles import get_profile, load_profiles
from kura_perf.settings.environment import read_credential, setting_values
from kura_perf.settings.paths import Paths

if TYPE_CHECKING:  # pragma: no cover
    from kura_perf.profiles import Profile


@dataclass(frozen=True)
class RunSettings:
    paths: Paths
    profiles_file: str | None = None  # an extra profiles TOML file; None: the built-in profiles only
    meter: bool = True  # False: no memory sampler or peak reset (to measure what metering costs)
    simulator_url: str | None = None  # the API simulator serving this run; None unless one does
    model_cache: Path | None = None  # ONNX exports kept per machine; None: <data root>/model_cache
    # Which environment variables hold the API key and endpoint; None: the profile's api.api_key_env /
    # api.base_url_env. Names only: the values are read where a client is built.
    api_key_env: str | None = None
    base_url_env: str | None = None
    # 'module:function' taking a backend and returning the backend a stage runs on: a hook for tests
    # (a slower stage for the regression checks) and for instrumentation; None: the backend as built.
    backend_wrapper: str | None = None
    # The nightly schedule's partitions, "profile:scale,..."; None: defs/schedules.py's default.
    nightly: str | None = None
    # Kura specs the nightly for Kura compares with the last release ("spec,..."; defs/kura_versions.py); None: none.
    nightly_kura: str | None = None
    # Where regression alerts are POSTed; None: log and alerts table only. Not in repr: webhook URLs
    # often embed a secret token.
    alert_webhook: str | None = field(default=None, repr=False)
    # An embedding shard attempt whose heartbeat is this many seconds old is dead (pipeline/shards.py):
    # a worker records it as died and runs the shard again.
    shard_stale_s: float = 30.0
    # The cluster jobs' executor (defs/cluster.py): "celery" (make cluster, docker-compose) or "k8s"
    # (deploy/helm, one pod per step). Chosen where the definitions load: the deployment decides.
    cluster_executor: str = "celery"
    # One updating progress line per stage (meter/progress_bar.py) instead of a log line every 5 s.
    # Set by the CLI when its stderr is a terminal; no environment variable: whether a person watches
    # is the edge's to say (CI, pipes, Dagster's UI and workers keep the plain lines).
    progress_bar: bool = False
    # A JSON-lines file our API client appends one line per HTTP request to (model, kind, tokens, latency,
    # status, retry; never content nor key: meter/request_log.py), for `kura-perf calibrate`; None: none.
    api_log: str | None = None
    # The Kura spec (`kura==0.5.2`, `path:…`, `git:…@sha`) this process measures, as the user gave it; set
    # by `kura-perf run --kura` for the run it starts inside the spec's environment (kura_perf/kura_envs/),
    # kept on every record. None: the Kura installed in kura_perf's own environment.
    kura_spec: str | None = None

    def __post_init__(self) -> None:
        if self.model_cache is None:  # built directly (not from_env): the data root's own cache
            object.__setattr__(self, "model_cache", self.paths.root / "model_cache")

    @classmethod
    def from_env(cls, *, home: str | os.PathLike | None = None, results: str | None = None,
                 env: Mapping[str, str] | None = None, **overrides: Any) -> "RunSettings":
        """The settings of this process, for the edges only: each field from `overrides` when given
        (not None), else from the environment, else its default (kura_perf/settings/environment.py).
        `home` and `results` set the data root and the results location; `paths=` gives the whole Paths."""
        unknown = set(overrides) - {f.name for f in dataclasses.fields(cls)}
        if unknown:
            raise TypeError(f"RunSettings has no field(s) {sorted(unknown)}")
        given = {key: value for key, value in overrides.items() if value is not None}
        paths = given.pop("paths", None) or Paths.from_env(home, results, env)
        values = {**{key: value for key, value in setting_values(env).items() if value is not None}, **given}
        cache = values.pop("model_cache", None) or paths.model_cache
        return cls(paths=paths, model_cache=Path(cache), **values)

    def replace(self, **changes: Any) -> "RunSettings":
        return dataclasses.replace(self, **changes)

    # -- profiles: the partitions and every lookup come from the same file ---------------------------
    def profiles(self) -> "dict[str, Profile]":
        return load_profiles(self.profiles_file)

    def profile(self, name: str) -> "Profile":
        return get_profile(name, self.profiles_file)

    # -- credentials, by name ------------------------------------------------------------------------
    def api_key_env_for(self, profile: "Profile") -> str:
        return self.api_key_env or profile.api.api_key_env

    def base_url_env_for(self, profile: "Profile") -> str:
        return self.base_url_env or profile.api.base_url_env

    def api_key(self, profile: "Profile") -> str | None:
        """The profile's API key, read from its environment variable now (never kept)."""
        return read_credential(self.api_key_env_for(profile))

    def base_url(self, profile: "Profile") -> str | None:
        """The endpoint the profile's environment variable names, if any (the profile's base_url wins)."""
        return read_credential(self.base_url_env_for(profile))

    # -- hooks ---------------------------------------------------------------------------------------
    def wrap_backend(self, backend):
        """The backend a stage runs on: `backend`, or what `backend_wrapper` makes of it."""
        if not self.backend_wrapper:
            return backend
        return load_callable(self.backend_wrapper, "backend_wrapper")(backend)


def load_callable(spec: str, setting: str):
    """The function a 'module:function' setting names, or a KuraPerfError naming the setting."""
    module_name, _, attribute = spec.partition(":")
    if not module_name or not attribute:
        raise KuraPerfError(f"{setting} '{spec}': expected 'module:function'")
    try:
        function = getattr(importlib.import_module(module_name), attribute)
    except (ImportError, AttributeError) as exc:
        raise KuraPerfError(f"{setting} '{spec}': {type(exc).__name__}: {exc}") from None
    if not callable(function):
        raise KuraPerfError(f"{setting} '{spec}': not callable")
    return function
