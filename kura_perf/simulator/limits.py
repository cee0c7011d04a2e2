"""Requests- and tokens-per-minute buckets per (endpoint kind, model), with OpenAI's headers.

Each limit is a continuously refilling bucket: rate = limit / 60 per second, capacity =
limit * burst_s / 60 (at least 1). A request is admitted only if both buckets hold enough; an
admitted request takes 1 request and its total tokens. Headers follow OpenAI: x-ratelimit-limit-*,
-remaining-* (what the bucket holds now) and -reset-* (time until the bucket is full again, as
"1s", "250ms", "6m0s").
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from kura_perf.simulator.config import EndpointConfig


def format_reset(seconds: float) -> str:
    seconds = max(0.0, seconds)
    if seconds < 1.0:
        return f"{int(math.ceil(seconds * 1000))}ms"
    minutes, rest = divmod(seconds, 60.0)
    rest = round(rest, 3)
    return f"{int(minutes)}m{rest:g}s" if minutes else f"{rest:g}s"


class Bucket:
    def __init__(self, limit_per_minute: int, burst_s: float, now: float):
        self.limit = int(limit_per_minute)
        self.rate = self.limit / 60.0
        self.capacity = max(1.0, self.limit * burst_s / 60.0)
        self.level = self.capacity
        self.updated = now

    def _refill(self, now: float) -> None:
        if now > self.updated:
            self.level = min(self.capacity, self.level + (now - self.updated) * self.rate)
            self.updated = now

    def wait_for(self, amount: float, now: float) -> float:
        """Seconds until `amount` is available (inf if it never fits)."""
        self._refill(now)
        if amount > self.capacity:
            return math.inf
        return 0.0 if self.level >= amount else (amount - self.level) / self.rate

    def take(self, amount: float, now: float) -> None:
        self._refill(now)
        self.level -= amount

    def remaining(self, now: float) -> int:
        self._refill(now)
        return max(0, int(self.level))

    def reset_in(self, now: float) -> float:
        self._refill(now)
        return (self.capacity - self.level) / self.rate if self.rate > 0 else 0.0


@dataclass
class Admission:
    admitted: bool
    retry_after_s: float = 0.0
    limit_name: str = ""  # "requests" or "tokens" when refused
    limit: int = 0
    too_large: bool = False  # the request alone exceeds the token bucket


class ModelLimits:
    """The two buckets of one (kind, model)."""

    def __init__(self, endpoint: EndpointConfig, burst_s: float, now: float):
        self.requests = Bucket(endpoint.rpm, burst_s, now) if endpoint.rpm else None
        self.tokens = Bucket(endpoint.tpm, burst_s, now) if endpoint.tpm else None

    def admit(self, tokens: int, now: float) -> Admission:
        waits = []
        if self.requests is not None:
            waits.append(("requests", self.requests.wait_for(1, now), self.requests.limit))
        if self.tokens is not None:
            waits.append(("tokens", self.tokens.wait_for(tokens, now), self.tokens.limit))
        refused = [w for w in waits if w[1] > 0]
        if refused:
            name, wait, limit = max(refused, key=lambda w: w[1])
            return Admission(False, wait, name, limit, too_large=math.isinf(wait))
        if self.requests is not None:
            self.requests.take(1, now)
        if self.tokens is not None:
            self.tokens.take(tokens, now)
        return Admission(True)

    def headers(self, now: float) -> dict[str, str]:
        out: dict[str, str] = {}
        for name, bucket in (("requests", self.requests), ("tokens", self.tokens)):
            if bucket is None:
                continue
            out[f"x-ratelimit-limit-{name}"] = str(bucket.limit)
            out[f"x-ratelimit-remaining-{name}"] = str(bucket.remaining(now))
            out[f"x-ratelimit-reset-{name}"] = format_reset(bucket.reset_in(now))
        return out


class RateLimiter:
    """Buckets created on first use per (kind, model), from the config in force."""

    def __init__(self, endpoints: dict[str, EndpointConfig], burst_s: float):
        self.endpoints = endpoints
        self.burst_s = burst_s
        self._limits: dict[tuple[str, str], ModelLimits] = {}

    def for_model(self, kind: str, model: str, now: float) -> ModelLimits:
        key = (kind, model)
        if key not in self._limits:
            self._limits[key] = ModelLimits(self.endpoints[kind], self.burst_s, now)
        return self._limits[key]
