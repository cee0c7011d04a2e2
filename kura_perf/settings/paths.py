"""Where kura_perf reads and writes. One root (KURA_PERF_HOME, default ./data) holds everything,
unless `results` (KURA_PERF_RESULTS: a shared path or an fsspec URL such as s3://bucket/kura) names
where stage outputs and metric records go, so that workers on several machines reach the same ones;
the root then keeps only per-machine things (running markers, reports, the Dagster home).

A Paths is plain values: it never reads the environment itself (a property that did would answer
differently in the CLI and in a Dagster worker). `Paths.from_env` is for the edges only; it reads
the variables through kura_perf/settings/environment.py."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from kura_perf.errors import KuraPerfError
from kura_perf.files.location import Location, resolve
from kura_perf.models.cache import derived_models_dir
from kura_perf.settings.environment import path_values

# Profile and scale names become folder names (storage/<profile>/<scale>/): one path component of
# letters, digits, '.', '_' and '-', starting with a letter or digit (so never '.', '..' or '/').
SAFE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
SAFE_NAME_RULE = "1-64 characters of letters, digits, '.', '_' or '-', starting with a letter or digit"


def check_safe_name(kind: str, name: str) -> str:
    """`name` if it can be a folder name under the data root, else a KuraPerfError naming the rule."""

    if not isinstance(name, str) or not SAFE_NAME.fullmatch(name):
        raise KuraPerfError(f"{kind} name {name!r} is not allowed: use {SAFE_NAME_RULE}")
    return name



@dataclass(frozen=True)
class Paths:
    root: Path
    results: str | None = None  # a shared path or fsspec URL for storage/ and metrics/; None = root
    database_file: Path | None = None  # the DuckDB views file (KURA_PERF_DB); None: <root>/metrics.duckdb

    @classmethod
    def from_env(cls, home: "str | os.PathLike | None" = None, results: str | None = None,
                 env: "Mapping[str, str] | None" = None) -> "Paths":
        """This process's paths, from the environment (KURA_PERF_HOME, KURA_PERF_RESULTS, KURA_PERF_DB):
        for the edges only (the CLI); below them, a Paths is passed in. `home`/`results` win when given."""
        return cls(**path_values(home, results, env))

    @property
    def results_root(self) -> "Path | Location":
        return resolve(self.results) if self.results else self.root

    @property
    def storage(self) -> "Path | Location":
        """Stage outputs: storage/<profile>/<scale>/."""
        return self.results_root / "storage"

    @property
    def metrics(self) -> "Path | Location":
        """One Parquet file per record: the source of truth for every figure."""
        return self.results_root / "metrics"

    @property
    def database(self) -> Path:
        """A DuckDB file of views over metrics/, for analysts' own DuckDB shells."""
        return self.database_file or self.root / "metrics.duckdb"

    @property
    def reports(self) -> Path:
        return self.root / "reports"

    @property
    def model_cache(self) -> Path:
        """Models derived once per machine from shipped weights (ONNX exports), reused by every run
        (kura_perf/models/cache.py). The data root's own; RunSettings.model_cache is the one a run uses
        (KURA_PERF_MODEL_CACHE may share one between data roots)."""
        return derived_models_dir(self.root)

    @property
    def running(self) -> Path:
        """Markers of stages in progress, with their heartbeat (kura_perf/store/liveness.py)."""
        return self.root / "metrics_running"

    def partition_dir(self, profile: str, scale: str) -> "Path | Location":
        """storage/<profile>/<scale>/, refused unless both names are safe and it resolves under storage/."""

        folder = self.storage / check_safe_name("profile", profile) / check_safe_name("scale", scale)
        if isinstance(folder, Location):  # an object store has no symlinks to escape through
            return folder
        storage = self.storage.resolve()
        if not folder.resolve().is_relative_to(storage):  # e.g. a symlinked profile folder pointing elsewhere
            raise KuraPerfError(f"partition folder {folder} resolves to {folder.resolve()}, outside {storage}")
        return folder
