"""Counters an API-backed model fills at the HTTP layer; the meter copies them into the stage record."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field, fields


@dataclass
class ApiCounters:
    calls: int = 0  # HTTP requests sent, retries included
    errors: int = 0  # responses/exceptions that were not 2xx (429 included)
    rate_limited: int = 0  # HTTP 429
    retries: int = 0
    timeouts: int = 0
    tokens_in: int = 0
    tokens_out: int = 0
    cost_usd: float = 0.0  # of the priced calls; the total is unknown (None in as_dict) if any was unpriced
    unpriced_models: list[str] = field(default_factory=list)  # models answered whose price is unknown
    warnings: list[str] = field(default_factory=list)  # one line per unpriced model, for the record
    latencies_s: list[float] = field(default_factory=list)  # one per successful request
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def add(self, **deltas) -> None:
        with self._lock:
            for key, value in deltas.items():
                setattr(self, key, getattr(self, key) + value)

    def note_unpriced(self, model: str, warning: str) -> None:
        """A call to `model` was answered but its price is unknown; `warning` says so in the record."""
        with self._lock:
            if model not in self.unpriced_models:
                self.unpriced_models.append(model)
                self.warnings.append(warning)

    def merge(self, other: "ApiCounters") -> None:
        with self._lock:
            for f in fields(self):
                if f.name.startswith("_") or f.name in ("unpriced_models", "warnings"):
                    continue
                setattr(self, f.name, getattr(self, f.name) + getattr(other, f.name))
            for model, warning in zip(other.unpriced_models, other.warnings):
                if model not in self.unpriced_models:
                    self.unpriced_models.append(model)
                    self.warnings.append(warning)

    @property
    def total_cost_usd(self) -> float | None:
        """The cost of every call, or None when some model's price is unknown: never a silent $0."""
        return None if self.unpriced_models else self.cost_usd

    def as_dict(self) -> dict:
        data = {f.name: getattr(self, f.name) for f in fields(self) if not f.name.startswith("_")}
        data["cost_usd"] = self.total_cost_usd
        return data


def latency_percentiles(latencies_s: list[float]) -> dict:
    """p50/p95/p99 in milliseconds (None when nothing succeeded): one definition for records and sweeps."""
    if not latencies_s:
        return {"latency_p50_ms": None, "latency_p95_ms": None, "latency_p99_ms": None}
    import numpy as np

    p50, p95, p99 = np.percentile(np.asarray(latencies_s) * 1000, [50, 95, 99])
    return {"latency_p50_ms": float(p50), "latency_p95_ms": float(p95), "latency_p99_ms": float(p99)}
