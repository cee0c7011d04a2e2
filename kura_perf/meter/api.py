"""Counters an API-backed model fills at the HTTP layer; the meter copies them into the stage record."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field, fields

# The client's event loop busier than this share of its wall time: the stage was bound by the client's
# own CPU (a Python client does ~100-140 calls/s per core), not by the endpoint's limit or latency.
CLIENT_CPU_BOUND_SHARE = 0.9
# A stage that sustained this share of its binding limit over its whole API span ran at that limit
# (the slow-start probe, the ramp and the last answers' latency take the rest).
LIMIT_BOUND_SHARE = 0.85


def bound_by(within_burst: bool, client_cpu_bound: bool, limit_share: float | None, binding: str | None,
             inflight_mean: float, cap: int) -> str:
    """What set an API stage's pace, in words, for the record and the run's output. Why: "40% of the limit"
    alone does not say whether the limit, the client's CPU, the in-flight ceiling or the answers' latency
    (the endpoint's, or a box too busy to answer faster) held the stage back."""
    if not within_burst and limit_share is not None and limit_share >= LIMIT_BOUND_SHARE:
        return f"the {'RPM' if binding == 'requests' else 'TPM'} limit"
    # The limit did not set the pace (every request fitted its opening burst, or too little was sent).
    unbound = "not the limit (every request fitted its opening burst): " if within_burst else ""
    if client_cpu_bound:
        return unbound + "the client's CPU"
    if cap and inflight_mean >= 0.9 * cap:
        return unbound + "the in-flight ceiling (api.max_concurrency / api.concurrency)"
    return unbound + ("latency: the answers' time at the in-flight kept (the endpoint's, or that of a box "
                      "whose CPU, shared by client and simulator, cannot serve them faster)")


def limit_share(charged: float, capacity: float | None, wall_s: float, limit_per_min: float | None) -> float | None:
    """The share of a per-minute limit sustained over `wall_s`. The bucket starts full, so a short run
    could pass 100% on its opening burst alone: what the bucket held at the start (its capacity) is
    taken off before dividing by what the limit allows in that time."""
    if not limit_per_min or wall_s <= 0:
        return None
    return max(0.0, charged - (capacity or 0.0)) / (wall_s * limit_per_min / 60.0)


@dataclass
class ConcurrencyStats:
    """How many requests one client kept on the wire, against which limits, and how busy its event loop
    was: what says whether an API stage ran at the endpoint's limit, at its latency, or at the client's CPU.

    Times are time.monotonic(); in-flight is counted at the transport (sent until answered or failed)."""

    adaptive: bool = False
    cap: int = 0  # the most requests it may keep in flight (max_concurrency when adaptive, else concurrency)
    target_max: int = 0  # the highest in-flight target the adaptive controller set
    inflight_max: int = 0
    inflight_area_s: float = 0.0  # the integral of requests in flight over time (Little's law: mean x span)
    first_sent: float | None = None
    last_done: float | None = None
    limit_rpm: float | None = None  # as the headers (or hints) last said
    limit_tpm: float | None = None
    capacity_requests: float | None = None  # the buckets' size (their opening burst)
    capacity_tokens: float | None = None
    loop_cpu_s: float = 0.0  # CPU of the client's event-loop thread while it served this model's calls
    loop_wall_s: float = 0.0

    def merge(self, other: "ConcurrencyStats") -> None:
        """Two clients' figures as one (they ran one after the other or side by side: the span covers both)."""
        self.adaptive = self.adaptive or other.adaptive
        for name in ("cap", "target_max", "inflight_max"):
            setattr(self, name, max(getattr(self, name), getattr(other, name)))
        self.inflight_area_s += other.inflight_area_s
        self.loop_cpu_s += other.loop_cpu_s
        self.loop_wall_s += other.loop_wall_s
        starts = [t for t in (self.first_sent, other.first_sent) if t is not None]
        ends = [t for t in (self.last_done, other.last_done) if t is not None]
        self.first_sent, self.last_done = (min(starts) if starts else None), (max(ends) if ends else None)
        for name in ("limit_rpm", "limit_tpm", "capacity_requests", "capacity_tokens"):
            if getattr(self, name) is None:
                setattr(self, name, getattr(other, name))

    def summary(self, admitted: int, tokens: int) -> dict | None:
        """The figures a stage record keeps (its `extra["api_concurrency"]`); None when nothing was sent.
        admitted: requests the server answered other than 429; tokens: prompt + completion charged."""
        if self.first_sent is None or self.last_done is None:
            return None
        span = max(self.last_done - self.first_sent, 1e-9)
        shares = {"requests": limit_share(admitted, self.capacity_requests, span, self.limit_rpm),
                  "tokens": limit_share(tokens, self.capacity_tokens, span, self.limit_tpm)}
        known = {name: share for name, share in shares.items() if share is not None}
        binding = max(known, key=known.get) if known else None
        cpu_share = self.loop_cpu_s / self.loop_wall_s if self.loop_wall_s > 0 else None
        cpu_bound = cpu_share is not None and cpu_share >= CLIENT_CPU_BOUND_SHARE
        within_burst = (self.capacity_requests is not None and admitted <= self.capacity_requests
                        and (self.capacity_tokens is None or tokens <= self.capacity_tokens))
        return {
            "adaptive": self.adaptive, "cap": self.cap, "target_max": self.target_max or None,
            "inflight_max": self.inflight_max, "inflight_mean": round(self.inflight_area_s / span, 2),
            "span_s": round(span, 3), "rpm_limit": self.limit_rpm, "tpm_limit": self.limit_tpm,
            "requests_per_min": round(admitted / span * 60, 1), "tokens_per_min": round(tokens / span * 60, 1),
            "binding_limit": binding, "limit_share": None if binding is None else round(known[binding], 4),
            # every request and token fitted the buckets' opening burst: the limit never bound (limit_share 0)
            "within_burst": within_burst,
            "rate_share": (None if not self.limit_rpm else round(admitted / span * 60 / self.limit_rpm, 4)),
            "client_cpu_share": None if cpu_share is None else round(cpu_share, 3),
            "client_cpu_bound": cpu_bound,
            "bound_by": bound_by(within_burst, cpu_bound, None if binding is None else known[binding], binding,
                                 self.inflight_area_s / span, self.cap),
        }


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
    concurrency: ConcurrencyStats = field(default_factory=ConcurrencyStats)
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
                if f.name.startswith("_") or f.name in ("unpriced_models", "warnings", "concurrency"):
                    continue
                setattr(self, f.name, getattr(self, f.name) + getattr(other, f.name))
            self.concurrency.merge(other.concurrency)
            for model, warning in zip(other.unpriced_models, other.warnings):
                if model not in self.unpriced_models:
                    self.unpriced_models.append(model)
                    self.warnings.append(warning)

    @property
    def total_cost_usd(self) -> float | None:
        """The cost of every call, or None when some model's price is unknown: never a silent $0."""
        return None if self.unpriced_models else self.cost_usd

    def concurrency_summary(self) -> dict | None:
        """In flight, the binding limit's share and the client's CPU (ConcurrencyStats.summary)."""
        return self.concurrency.summary(self.calls - self.errors, self.tokens_in + self.tokens_out)

    def as_dict(self) -> dict:
        data = {f.name: getattr(self, f.name) for f in fields(self)
                if not f.name.startswith("_") and f.name != "concurrency"}
        data["cost_usd"] = self.total_cost_usd
        data["concurrency"] = self.concurrency_summary()
        return data


def latency_percentiles(latencies_s: list[float]) -> dict:
    """p50/p95/p99 in milliseconds (None when nothing succeeded): one definition for records and sweeps."""
    if not latencies_s:
        return {"latency_p50_ms": None, "latency_p95_ms": None, "latency_p99_ms": None}
    import numpy as np

    p50, p95, p99 = np.percentile(np.asarray(latencies_s) * 1000, [50, 95, 99])
    return {"latency_p50_ms": float(p50), "latency_p95_ms": float(p95), "latency_p99_ms": float(p99)}
