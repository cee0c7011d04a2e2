"""How a run is set up: one frozen object, built from the environment once, at the edge, and then
passed down explicitly (CLI or Dagster resource -> runner -> backend -> model factory -> models).

The CLI and the Dagster resource (`defs/resources.py`) both build it with `RunSettings.from_env`, so
the two cannot drift apart; nothing below them reads these settings from the environment again, and
nothing in the package writes them there (the few variables third-party libraries can only read
from the environment are set in `kura_perf/settings/third_party_env.py`). Credentials are held by the NAME of
their environment variable only: the key itself is read where a client is built, never stored here.

Environment variables read (each only when the matching argument of `from_env` is not given):
  KURA_PERF_HOME, KURA_PERF_RESULTS   the data root and the shared results location (config.Paths)
  KURA_PERF_PROFILES                  an extra profiles TOML file
  KURA_PERF_METER=off                 turns the meter's sampler and peak reset off (to measure its cost)
  KURA_PERF_SIMULATOR_URL             an API simulator already serving this run (else the Dagster
                                      resource starts one for profiles with api.simulate = true)
  KURA_PERF_MODEL_CACHE               one model cache (ONNX exports) shared between data roots
  KURA_PERF_BACKEND_WRAPPER           'module:function' wrapping every backend (tests, instrumentation)
"""

from __future__ import annotations

import dataclasses
import importlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kura_perf.settings.paths import Paths

if TYPE_CHECKING:  # pragma: no cover
    from kura_perf.profiles import Profile

PROFILES_ENV = "KURA_PERF_PROFILES"
METER_ENV = "KURA_PERF_METER"
SIMULATOR_URL_ENV = "KURA_PERF_SIMULATOR_URL"
BACKEND_WRAPPER_ENV = "KURA_PERF_BACKEND_WRAPPER"


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

    def __post_init__(self) -> None:
        if self.model_cache is None:  # built directly (not from_env): the data root's own cache
            object.__setattr__(self, "model_cache", self.paths.root / "model_cache")

    @classmethod
    def from_env(cls, *, home: str | os.PathLike | None = None, results: str | None = None,
                 **overrides: Any) -> "RunSettings":
        """The settings of this process: each field from `overrides` when given (not None), else from
        the environment, else its default. `home` and `results` set the data root and the results
        location (the rest of `paths` as config.Paths reads it); `paths=` gives the whole Paths."""
        unknown = set(overrides) - {f.name for f in dataclasses.fields(cls)}
        if unknown:
            raise TypeError(f"RunSettings has no field(s) {sorted(unknown)}")
        given = {key: value for key, value in overrides.items() if value is not None}
        env = os.environ
        paths = given.pop("paths", None)
        if paths is None:
            default = Paths.from_env()
            paths = Paths(Path(home).resolve() if home else default.root, results or default.results)
        values = {
            "profiles_file": env.get(PROFILES_ENV) or None,
            "meter": env.get(METER_ENV, "on") != "off",
            "simulator_url": env.get(SIMULATOR_URL_ENV) or None,
            "backend_wrapper": env.get(BACKEND_WRAPPER_ENV) or None,
            **given,
        }
        cache = values.pop("model_cache", None) or paths.model_cache  # $KURA_PERF_MODEL_CACHE, else under the root
        return cls(paths=paths, model_cache=Path(cache), **values)

    def replace(self, **changes: Any) -> "RunSettings":
        return dataclasses.replace(self, **changes)

    # -- profiles: the partitions and every lookup come from the same file ---------------------------
    def profiles(self) -> "dict[str, Profile]":
        from kura_perf.profiles import load_profiles

        return load_profiles(self.profiles_file, read_env=False)

    def profile(self, name: str) -> "Profile":
        from kura_perf.profiles import get_profile

        return get_profile(name, self.profiles_file, read_env=False)

    # -- credentials, by name ------------------------------------------------------------------------
    def api_key_env_for(self, profile: "Profile") -> str:
        return self.api_key_env or profile.api.api_key_env

    def base_url_env_for(self, profile: "Profile") -> str:
        return self.base_url_env or profile.api.base_url_env

    def api_key(self, profile: "Profile") -> str | None:
        """The profile's API key, read from its environment variable now (never kept)."""
        return os.environ.get(self.api_key_env_for(profile)) or None

    def base_url(self, profile: "Profile") -> str | None:
        """The endpoint the profile's environment variable names, if any (the profile's base_url wins)."""
        return os.environ.get(self.base_url_env_for(profile)) or None

    # -- hooks ---------------------------------------------------------------------------------------
    def wrap_backend(self, backend):
        """The backend a stage runs on: `backend`, or what `backend_wrapper` makes of it."""
        if not self.backend_wrapper:
            return backend
        return load_callable(self.backend_wrapper, "backend_wrapper")(backend)


def load_callable(spec: str, setting: str):
    """The function a 'module:function' setting names, or a KuraPerfError naming the setting."""
    from kura_perf.errors import KuraPerfError

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
