"""Profiles: the built-in file plus an extra TOML file the caller names (RunSettings.profiles_file, which
the edges read from KURA_PERF_PROFILES or --profiles). Nothing here reads the environment: the
partitions, the runs and every lookup see the same file because they get it from the same settings."""

from __future__ import annotations

import os
import tomllib
from importlib import resources
from pathlib import Path

from pydantic import ValidationError

from kura_perf.errors import ProfileError, did_you_mean, where_path
from kura_perf.profiles.schema import PROBLEM_MARK, ApiConfig, CustomStep, Profile
from kura_perf.settings.paths import SAFE_NAME, SAFE_NAME_RULE

__all__ = ["Profile", "ApiConfig", "CustomStep", "load_profiles", "get_profile"]

BUILTIN = "profiles.toml"


def _read_toml(text: str, source: str) -> dict:
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ProfileError(f"{source}: not valid TOML: {exc}") from None


def _describe(err: dict, source: str, name: str) -> str:
    key = ".".join(str(p) for p in err["loc"]) or "(profile)"
    kind, msg = err["type"], err["msg"]
    if kind == "extra_forbidden":
        nested = {"api": ApiConfig, "custom_step": CustomStep}
        model = Profile if len(err["loc"]) == 1 else nested.get(str(err["loc"][0]), ApiConfig)
        allowed = sorted(model.model_fields)
        return f"{source}: profile '{name}': unknown key '{key}'; allowed keys: {', '.join(allowed)}"
    if PROBLEM_MARK in msg:  # our own value checks: the message already names key, value and what is allowed
        return f"{source}: profile '{name}': {msg.split(PROBLEM_MARK, 1)[1]}"
    return f"{source}: profile '{name}': key '{key}': {msg} (got {_as_toml(err.get('input'))})"


def _as_toml(value) -> str:
    """A value as the profile file spells it: `true`, not Python's True (a boolean given for a number)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return repr(value)


def parse_profiles(data: dict, source: str) -> dict[str, Profile]:
    profiles = {}
    for name, body in data.items():
        if not SAFE_NAME.fullmatch(name):  # the name is a folder under the data root (storage/<profile>/)
            raise ProfileError(f"{source}: profile name {name!r} is not allowed: use {SAFE_NAME_RULE}")
        if not isinstance(body, dict):
            raise ProfileError(f"{source}: '{name}' must be a table of settings, got {type(body).__name__}")
        try:
            profiles[name] = Profile(name=name, **body)
        except ValidationError as exc:
            raise ProfileError(_describe(exc.errors()[0], source, name)) from None
        except TypeError as exc:  # e.g. a 'name' key given twice
            raise ProfileError(f"{source}: profile '{name}': {exc}") from None
    return profiles


def load_profiles(extra_file: str | os.PathLike | None = None) -> dict[str, Profile]:
    """The built-in profiles plus `extra_file`'s (None: the built-in ones only)."""
    text = resources.files("kura_perf.profiles").joinpath(BUILTIN).read_text()
    profiles = parse_profiles(_read_toml(text, BUILTIN), BUILTIN)
    if extra_file:
        path = Path(extra_file)
        if not path.is_file():
            problem = "not a file" if path.exists() else "not found"
            raise ProfileError(f"profiles file {problem}: {where_path(path)} (set by KURA_PERF_PROFILES, "
                               "--profiles or --profiles-file)")
        profiles.update(parse_profiles(_read_toml(path.read_text(), str(path)), str(path)))
    return profiles


def get_profile(name: str, extra_file: str | os.PathLike | None = None) -> Profile:
    profiles = load_profiles(extra_file)
    if name not in profiles:
        raise ProfileError(f"unknown profile '{name}'{did_you_mean(name, profiles)}; available: {', '.join(profiles)}")
    return profiles[name]
