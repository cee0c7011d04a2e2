"""How and where an API-backed model calls: one object, built from a profile and the run's settings by
the model factory (backends/model_factory.api_settings), which reads the key by name where the client
is built. Nothing here reads the environment: an ApiModel always gets its ApiSettings passed in."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any


@dataclass(repr=False)
class ApiSettings:
    """Where and how to call. The key is never shown: repr/str mask it, `redacted()` is for records."""

    base_url: str | None = None  # None: the SDK's default (OPENAI_BASE_URL or api.openai.com)
    api_key: str | None = None  # None: the SDK reads OPENAI_API_KEY
    timeout_s: float = 30.0  # per HTTP request
    max_retries: int = 5  # our retry budget per request (the SDK's own retries are off)
    concurrency: int = 10  # requests in flight per model (adaptive: the start, before the limits are known)
    # Adaptive: the in-flight bound follows the binding limit x latency (adaptive.py), up to max_concurrency.
    adaptive: bool = False
    max_concurrency: int = 1000
    deadline_s: float = 300.0  # per request, across all attempts and waits
    backoff_base_s: float = 0.5
    backoff_max_s: float = 20.0
    rpm: int | None = None  # optional hints used for pacing before the first headers arrive
    tpm: int | None = None
    pace_from_headers: bool = True
    prices: dict[str, tuple[float, float]] | None = None  # merged over PRICES_PER_1M_TOKENS
    seed: int | None = None  # jitter draws; None = nondeterministic
    api_log: str | None = None  # a JSON-lines request log to append to (meter/request_log.py); None: none

    def __post_init__(self) -> None:
        if self.concurrency < 1:
            raise ValueError(f"concurrency must be >= 1 (got {self.concurrency})")
        if self.max_concurrency < 1:
            raise ValueError(f"max_concurrency must be >= 1 (got {self.max_concurrency})")
        if self.max_retries < 0:
            raise ValueError(f"max_retries must be >= 0 (got {self.max_retries})")

    @property
    def inflight_cap(self) -> int:
        """The most requests this client may keep in flight (and so the connections it may open)."""
        return self.max_concurrency if self.adaptive else self.concurrency

    def redacted(self) -> dict[str, Any]:
        """Every setting, with the key replaced by whether it is set: safe to store or print."""
        data = asdict(self)
        data["api_key"] = "***" if self.api_key else None
        return data

    def __repr__(self) -> str:
        inner = ", ".join(f"{k}={v!r}" for k, v in self.redacted().items())
        return f"ApiSettings({inner})"

    __str__ = __repr__
