"""The only module of kura_perf that reads its own settings from the process environment.

Why one module: a setting read deep in the code (a model factory, a schedule, a `.database` property)
is invisible to the caller, differs between the CLI process and a Dagster worker, and cannot be
overridden per run. So the edges (the CLI, the Dagster resource and code location, the simulator's
process entry, test fixtures) call `read_run_settings` / `read_paths` once, and everything below
them takes the resulting `RunSettings` (or its `Paths`) as a required argument.
kura_perf_tests/test_settings.py fails on a read of these variables anywhere else, and on a call of
`RunSettings.from_env` / `Paths.from_env` below the edges.

| variable                   | meaning                                                      | default                    |
|----------------------------|--------------------------------------------------------------|----------------------------|
| KURA_PERF_HOME             | the data root (everything per machine lives under it)        | ./data                     |
| KURA_PERF_RESULTS          | where stage outputs and records go when workers span         | under the data root        |
|                            | machines: a shared path or an fsspec URL (s3://bucket/kura)  |                            |
| KURA_PERF_DB               | the DuckDB file of views over metrics/ (Paths.database)      | <data root>/metrics.duckdb |
| KURA_PERF_PROFILES         | an extra profiles TOML file                                  | the built-in profiles only |
| KURA_PERF_METER            | `off` turns the meter's sampler and peak reset off (to       | on                         |
|                            | measure what metering costs)                                 |                            |
| KURA_PERF_SIMULATOR_URL    | an API simulator already serving this run (else the Dagster  | none                       |
|                            | resource starts one for profiles with api.simulate = true)   |                            |
| KURA_PERF_MODEL_CACHE      | one model cache (ONNX exports) shared between data roots     | <data root>/model_cache    |
| KURA_PERF_BACKEND_WRAPPER  | 'module:function' wrapping every backend (tests,             | none                       |
|                            | instrumentation)                                             |                            |
| KURA_PERF_NIGHTLY          | partitions of the nightly schedule, "profile:scale,..."      | offline:100,offline:1k,    |
|                            |                                                              | offline:10k                |
| KURA_PERF_NIGHTLY_KURA     | Kura specs the nightly runs against Kura's last release,      | none (that schedule skips) |
|                            | kura-tier5 at 1k: "path:/src/kura,git:/src/kura@main"        |                            |
| KURA_PERF_ALERT_WEBHOOK    | a URL that receives a JSON POST per regression alert         | none (log + alerts table)  |
| KURA_PERF_SHARD_STALE_S    | seconds after which an embedding shard's silent heartbeat    | 30                         |
|                            | means its attempt died (a worker then records and redoes it) |                            |
| KURA_PERF_CLUSTER_EXECUTOR | the cluster jobs' executor where the definitions load:       | celery                     |
|                            | `celery` or `k8s` (deploy/helm)                              |                            |
| KURA_PERF_API_LOG          | a JSON-lines file our API client appends a line per request  | none                       |
|                            | to, for `kura-perf calibrate` (never content nor key)        |                            |

Credentials are not settings: RunSettings holds the NAME of the variable with the key or endpoint
(the profile's api.api_key_env / api.base_url_env, e.g. OPENAI_API_KEY), and `read_credential`
reads its value where a client is built, so a key is never kept in an object that may be logged.

Read elsewhere, and why (not yet moved here, or not kura_perf's own):
  KURA_PERF_PG_*, KURA_PERF_BROKER_URL, KURA_PERF_BACKEND_URL
                              Dagster's own YAML (deploy/dagster.yaml, deploy/celery.yaml `env:`)
  DAGSTER_HOME, NUMBA_CACHE_DIR, PATH
                              third-party variables (defs/instance.py, models/jit_cache.py, services/)

Writes are elsewhere: only kura_perf/settings/third_party_env.py writes the environment.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

HOME_ENV = "KURA_PERF_HOME"
RESULTS_ENV = "KURA_PERF_RESULTS"
DATABASE_ENV = "KURA_PERF_DB"
PROFILES_ENV = "KURA_PERF_PROFILES"
METER_ENV = "KURA_PERF_METER"
SIMULATOR_URL_ENV = "KURA_PERF_SIMULATOR_URL"
MODEL_CACHE_ENV = "KURA_PERF_MODEL_CACHE"
BACKEND_WRAPPER_ENV = "KURA_PERF_BACKEND_WRAPPER"
NIGHTLY_ENV = "KURA_PERF_NIGHTLY"
NIGHTLY_KURA_ENV = "KURA_PERF_NIGHTLY_KURA"
ALERT_WEBHOOK_ENV = "KURA_PERF_ALERT_WEBHOOK"
SHARD_STALE_ENV = "KURA_PERF_SHARD_STALE_S"
CLUSTER_EXECUTOR_ENV = "KURA_PERF_CLUSTER_EXECUTOR"
API_LOG_ENV = "KURA_PERF_API_LOG"
DEFAULT_HOME = "data"


@dataclass(frozen=True)
class Variable:
    name: str
    meaning: str
    default: str


VARIABLES = (
    Variable(HOME_ENV, "the data root", "./data"),
    Variable(RESULTS_ENV, "shared stage outputs and records (a path or an fsspec URL)", "under the data root"),
    Variable(DATABASE_ENV, "the DuckDB file of views over metrics/", "<data root>/metrics.duckdb"),
    Variable(PROFILES_ENV, "an extra profiles TOML file", "the built-in profiles only"),
    Variable(METER_ENV, "'off': no memory sampler or peak reset", "on"),
    Variable(SIMULATOR_URL_ENV, "an API simulator already serving this run", "none"),
    Variable(MODEL_CACHE_ENV, "one model cache shared between data roots", "<data root>/model_cache"),
    Variable(BACKEND_WRAPPER_ENV, "'module:function' wrapping every backend", "none"),
    Variable(NIGHTLY_ENV, "partitions of the nightly schedule ('profile:scale,...')",
             "offline:100,offline:1k,offline:10k"),
    Variable(NIGHTLY_KURA_ENV, "Kura specs the nightly runs against the last release ('path:/src/kura,...')",
             "none (that schedule skips)"),
    Variable(ALERT_WEBHOOK_ENV, "a URL receiving a JSON POST per regression alert", "none"),
    Variable(SHARD_STALE_ENV, "seconds of heartbeat silence after which a shard attempt is dead", "30"),
    Variable(CLUSTER_EXECUTOR_ENV, "the cluster jobs' executor: 'celery' or 'k8s'", "celery"),
    Variable(API_LOG_ENV, "a JSON-lines request log for `kura-perf calibrate`", "none"),
)
OWN_VARIABLES = frozenset(v.name for v in VARIABLES)


def _value(env: Mapping[str, str], name: str) -> str | None:
    """The variable's value; unset and empty are the same: not given."""
    return env.get(name) or None


def path_values(home: str | os.PathLike | None = None, results: str | None = None,
                env: Mapping[str, str] | None = None) -> dict[str, Any]:
    """The fields of `Paths` (settings/paths.py): `home`/`results` when given, else the environment's
    (KURA_PERF_HOME, KURA_PERF_RESULTS, KURA_PERF_DB), else the defaults. Values, not a Paths: this
    module imports nothing of the settings it feeds, so no import loop runs through it."""
    env = os.environ if env is None else env
    root = Path(home) if home else Path(env.get(HOME_ENV, DEFAULT_HOME))
    database = _value(env, DATABASE_ENV)
    return {"root": root.resolve(), "results": results or _value(env, RESULTS_ENV),
            "database_file": Path(database) if database else None}


def setting_values(env: Mapping[str, str] | None = None) -> dict[str, Any]:
    """The fields of `RunSettings` (settings/run.py) the environment sets, besides the paths; a field
    the environment leaves unset is None (model_cache: None means the data root's own cache)."""
    env = os.environ if env is None else env
    return {
        "profiles_file": _value(env, PROFILES_ENV),
        "meter": env.get(METER_ENV, "on") != "off",
        "simulator_url": _value(env, SIMULATOR_URL_ENV),
        "backend_wrapper": _value(env, BACKEND_WRAPPER_ENV),
        "nightly": _value(env, NIGHTLY_ENV),
        "nightly_kura": _value(env, NIGHTLY_KURA_ENV),
        "alert_webhook": _value(env, ALERT_WEBHOOK_ENV),
        "model_cache": _value(env, MODEL_CACHE_ENV),
        "shard_stale_s": _float(env, SHARD_STALE_ENV),
        "cluster_executor": _value(env, CLUSTER_EXECUTOR_ENV),
        "api_log": _value(env, API_LOG_ENV),
    }


def _float(env: Mapping[str, str], name: str) -> float | None:
    """A number of seconds; a value that is not one is refused naming the variable (no bare ValueError)."""
    raw = _value(env, name)
    if raw is None:
        return None
    try:
        value = float(raw)
    except ValueError:
        raise ValueError(f"{name}={raw!r}: expected a number of seconds") from None
    if not value > 0:
        raise ValueError(f"{name}={raw!r}: expected a positive number of seconds")
    return value


def read_credential(name: str) -> str | None:
    """The value of the credential variable `name` (an API key or endpoint the settings name), now:
    read where a client is built, never kept in the settings."""
    return os.environ.get(name) or None
