"""Retrying one API request, with tenacity: which failures are worth another attempt, how long to
wait (never shorter than the server's `retry-after`), and when to give up.

Only 408, 409, 429, 5xx, connection errors, timeouts (and an answer that fails schema validation)
are retried. Waits are exponential with jitter, but at least the server's `retry-after-ms` /
`retry-after`: the jitter spreads retries that a shared retry-after would otherwise send back all
at once. A request gives up after `max_retries` retries or when the next wait would pass its
deadline; the StageError then names the model, the attempts and the last error.
"""

from __future__ import annotations

import random
import time
from typing import Awaitable, Callable, TypeVar

import openai
from tenacity import AsyncRetrying, RetryCallState, RetryError, retry_if_exception_type

from kura_perf.errors import StageError
from kura_perf.models.openai_api.headers import retry_after_s
from kura_perf.models.openai_api.settings import ApiSettings

T = TypeVar("T")

RETRYABLE_STATUS = frozenset({408, 409, 429}) | frozenset(range(500, 600))


class InvalidOutput(Exception):
    """A 200 answer whose content does not fit the schema (retried: models are not deterministic)."""


class Retryable(Exception):
    """One failed attempt worth another: what went wrong, and the server's requested wait if any."""

    def __init__(self, last: str, hint_s: float | None = None):
        super().__init__(last)
        self.last = last
        self.hint_s = hint_s


def error_message(exc: openai.APIStatusError) -> str:
    body = exc.body if isinstance(exc.body, dict) else {}
    message = body.get("message") or (body.get("error") or {}).get("message") if body else None
    return str(message or exc.message)[:200]


def classify(exc: BaseException, name: str, what: str, settings: ApiSettings) -> BaseException:
    """A failed attempt as Retryable, or the StageError that ends the request now."""
    if isinstance(exc, openai.APIStatusError):
        last = f"HTTP {exc.status_code} ({error_message(exc)})"
        if exc.status_code not in RETRYABLE_STATUS:
            return StageError(f"{name}: {what} failed with {last}, which is not retryable "
                              f"(base_url {settings.base_url or 'default'})")
        return Retryable(last, retry_after_s(exc.response.headers))
    if isinstance(exc, openai.APITimeoutError):
        return Retryable(f"no answer within the {settings.timeout_s:g}s timeout")
    if isinstance(exc, openai.APIConnectionError):
        return Retryable(f"connection error ({type(exc.__cause__).__name__ if exc.__cause__ else 'unknown'})")
    if isinstance(exc, InvalidOutput):
        return Retryable(f"invalid output ({exc})")
    return exc


class RetryPolicy:
    """The waits and limits of one model's retries (jitter draws seeded per model for tests)."""

    def __init__(self, settings: ApiSettings, on_retry: Callable[[], None]):
        self.settings = settings
        self.on_retry = on_retry
        self._random = random.Random(settings.seed)

    def backoff_s(self, attempt: int, hint: float | None) -> float:
        ceiling = min(self.settings.backoff_max_s, self.settings.backoff_base_s * 2 ** (attempt - 1))
        backoff = ceiling * self._random.uniform(0.5, 1.0)
        return backoff if hint is None else max(hint * self._random.uniform(1.0, 1.1), backoff)

    async def run(self, name: str, what: str, attempt: Callable[[], Awaitable[T]], deadline: float) -> T:
        """Call `attempt` until it succeeds, fails for good, runs out of retries or of time."""
        settings = self.settings

        def wait(state: RetryCallState) -> float:
            return self.backoff_s(state.attempt_number, state.outcome.exception().hint_s)

        def stop(state: RetryCallState) -> bool:
            out_of_retries = state.attempt_number > settings.max_retries
            return out_of_retries or time.monotonic() + (state.upcoming_sleep or 0.0) > deadline

        retrying = AsyncRetrying(retry=retry_if_exception_type(Retryable), wait=wait, stop=stop,
                                 before_sleep=lambda state: self.on_retry())
        try:
            return await retrying(attempt)
        except RetryError as exc:
            state = exc.last_attempt
            last = state.exception().last
            n = state.attempt_number
            if n > settings.max_retries:
                raise StageError(f"{name}: {what} failed after {n} attempts "
                                 f"(max_retries={settings.max_retries}); last error: {last}") from None
            raise StageError(f"{name}: {what} failed after {n} attempts: the next retry would "
                             f"pass the {settings.deadline_s:g}s deadline; last error: {last}") from None
