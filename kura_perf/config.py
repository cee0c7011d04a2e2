"""Where kura_perf reads and writes. One root (KURA_PERF_HOME, default ./data) holds everything,
unless `results` (KURA_PERF_RESULTS: a shared path or an fsspec URL such as s3://bucket/kura) names
where stage outputs and metric records go, so that workers on several machines reach the same ones;
the root then keeps only per-machine things (pending hand-offs, reports, the Dagster home)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from kura_perf.location import Location, resolve


@dataclass(frozen=True)
class Paths:
    root: Path
    results: str | None = None  # a shared path or fsspec URL for storage/ and metrics/; None = root

    @classmethod
    def from_env(cls) -> "Paths":
        return cls(Path(os.environ.get("KURA_PERF_HOME", "data")).resolve(),
                   os.environ.get("KURA_PERF_RESULTS") or None)

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
        return Path(os.environ.get("KURA_PERF_DB", self.root / "metrics.duckdb"))

    @property
    def reports(self) -> Path:
        return self.root / "reports"

    @property
    def pending(self) -> Path:
        """Stage records handed from an asset body to its hook within one run."""
        return self.root / "metrics_pending"

    @property
    def running(self) -> Path:
        """Markers of stages in progress, with their heartbeat (kura_perf/store/liveness.py)."""
        return self.root / "metrics_running"

    def partition_dir(self, profile: str, scale: str) -> "Path | Location":
        return self.storage / profile / scale
