"""API-backed summary, cluster-naming and embedding models over any OpenAI-compatible endpoint.

OpenAI itself, vLLM, Ollama, a gateway or our simulator: only `ApiSettings.base_url` differs.

How a call is made, and why:
- Counting at the HTTP layer. The AsyncOpenAI client gets an httpx.AsyncClient whose transport is
  wrapped by `CountingTransport`: every HTTP exchange (retries included) is counted into the model's
  `ApiCounters` -- calls, non-2xx answers and transport failures as errors, 429s, client timeouts,
  latency of successful answers, tokens and cost from `usage`. The SDK's own retries are switched
  off (max_retries=0) because they would be invisible; `_with_retries` retries instead.
- Retries: only 408, 409, 429, 5xx, connection errors, timeouts (and an answer that fails schema
  validation). Exponential backoff with jitter, but never shorter than the server's
  `retry-after-ms` / `retry-after`. Bounded by `max_retries` and `deadline_s` per request; past
  either, StageError names the model, the attempts and the last error.
- Pacing: `HeaderPacer` keeps an estimate of the remaining request and token budget per model from
  the x-ratelimit-* headers (refilled at limit/60 per second) and waits before sending when it is
  used up; an asyncio.Semaphore bounds requests in flight to `concurrency`.
- One client per model per process, on a private event loop in a daemon thread, created on that loop
  and closed there (`close()`, context manager, or a finalizer). Why not `asyncio.run` per batch: an
  AsyncOpenAI/httpx client is bound to the loop it first used; reusing it from a new loop fails
  (openai-python #1059), and short-lived clients left to the garbage collector have their pooled
  connections closed from whichever thread/loop collects them (openai-python #2440), which hangs or
  breaks requests. A long-lived loop keeps one pool alive for the model's lifetime and also works
  when the caller already runs inside an event loop.
"""

from __future__ import annotations

import asyncio
import base64
import email.utils
import os
import random
import re
import threading
import time
import weakref
from dataclasses import asdict, dataclass
from contextvars import ContextVar
from typing import Any, Awaitable, Callable, Coroutine, Sequence, TypeVar
from urllib.parse import urlsplit
from urllib.request import getproxies, proxy_bypass

import httpx
import numpy as np
import openai
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from kura_perf.corpus.types import Conversation
from kura_perf.errors import StageError
from kura_perf.meter.api import ApiCounters
from kura_perf.models.protocols import SUMMARY_FIELDS
from kura_perf.simulator.tokens import estimate_tokens

T = TypeVar("T")

# USD per 1M tokens, (input, output). Looked up by exact model id, then by the longest prefix
# ("gpt-4o-mini-2024-07-18" -> "gpt-4o-mini"); unknown models cost 0. Override per run with
# ApiSettings(prices={...}). List prices as of 2024-2025; check the provider's page before quoting.
PRICES_PER_1M_TOKENS: dict[str, tuple[float, float]] = {
    "gpt-4o-mini": (0.15, 0.60),
    "gpt-4o": (2.50, 10.00),
    "text-embedding-3-small": (0.02, 0.0),
    "text-embedding-3-large": (0.13, 0.0),
    "text-embedding-ada-002": (0.10, 0.0),
}

RETRYABLE_STATUS = frozenset({408, 409, 429}) | frozenset(range(500, 600))
NATIVE_EMBEDDING_DIMENSIONS = {"text-embedding-3-small": 1536, "text-embedding-3-large": 3072,
                               "text-embedding-ada-002": 1536}


def price_for(model: str, prices: dict[str, tuple[float, float]] | None = None) -> tuple[float, float]:
    table = {**PRICES_PER_1M_TOKENS, **(prices or {})}
    if model in table:
        return table[model]
    matches = [name for name in table if model.startswith(name)]
    return table[max(matches, key=len)] if matches else (0.0, 0.0)


# --------------------------------------------------------------------------------------------
# Settings
# --------------------------------------------------------------------------------------------
@dataclass(repr=False)
class ApiSettings:
    """Where and how to call. The key is never shown: repr/str mask it, `redacted()` is for records."""

    base_url: str | None = None  # None: the SDK's default (OPENAI_BASE_URL or api.openai.com)
    api_key: str | None = None  # None: the SDK reads OPENAI_API_KEY
    timeout_s: float = 30.0  # per HTTP request
    max_retries: int = 5  # our retry budget per request (the SDK's own retries are off)
    concurrency: int = 10  # requests in flight per model
    deadline_s: float = 300.0  # per request, across all attempts and waits
    backoff_base_s: float = 0.5
    backoff_max_s: float = 20.0
    rpm: int | None = None  # optional hints used for pacing before the first headers arrive
    tpm: int | None = None
    pace_from_headers: bool = True
    prices: dict[str, tuple[float, float]] | None = None  # merged over PRICES_PER_1M_TOKENS
    seed: int | None = None  # jitter draws; None = nondeterministic

    def __post_init__(self) -> None:
        if self.concurrency < 1:
            raise ValueError(f"concurrency must be >= 1 (got {self.concurrency})")
        if self.max_retries < 0:
            raise ValueError(f"max_retries must be >= 0 (got {self.max_retries})")

    @classmethod
    def from_env(cls, base_url_env: str = "OPENAI_BASE_URL", api_key_env: str = "OPENAI_API_KEY",
                 **overrides: Any) -> "ApiSettings":
        overrides.setdefault("base_url", os.environ.get(base_url_env) or None)
        overrides.setdefault("api_key", os.environ.get(api_key_env) or None)
        return cls(**overrides)

    def redacted(self) -> dict[str, Any]:
        """Every setting, with the key replaced by whether it is set: safe to store or print."""
        data = asdict(self)
        data["api_key"] = "***" if self.api_key else None
        return data

    def __repr__(self) -> str:
        inner = ", ".join(f"{k}={v!r}" for k, v in self.redacted().items())
        return f"ApiSettings({inner})"

    __str__ = __repr__


# --------------------------------------------------------------------------------------------
# Rate-limit headers and pacing
# --------------------------------------------------------------------------------------------
_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|h|m|s)")


def parse_reset(value: str | None) -> float | None:
    """OpenAI's reset durations ("1s", "6m0s", "250ms", "1h2m3.5s") or plain seconds, in seconds."""
    if not value:
        return None
    try:
        return float(value)
    except ValueError:
        pass
    unit_s = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001}
    parts = _DURATION_PART.findall(value)
    return sum(float(n) * unit_s[u] for n, u in parts) if parts else None


def retry_after_s(headers: httpx.Headers | dict | None) -> float | None:
    """The server's requested wait: retry-after-ms, else retry-after (seconds or an HTTP date)."""
    if not headers:
        return None
    ms = headers.get("retry-after-ms")
    if ms:
        try:
            return max(0.0, float(ms) / 1000.0)
        except ValueError:
            pass
    value = headers.get("retry-after")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
            return max(0.0, when.timestamp() - time.time())
        except (TypeError, ValueError):
            return None


class _Budget:
    """The client's estimate of one server bucket: unknown (no limit) until a header or hint says.

    It refills at limit/60 per second up to the bucket's capacity, which the headers give away:
    remaining + reset_seconds * limit/60 (the reset header is the time until the bucket is full).
    Without a reset header the capacity is taken to be the whole per-minute limit."""

    def __init__(self, limit: int | None):
        self.limit = float(limit) if limit else None
        self.capacity = self.limit
        self.level = self.limit
        self.updated = time.monotonic()

    def _refill(self, now: float) -> None:
        if self.limit is not None and self.level is not None and now > self.updated:
            self.level = min(self.capacity, self.level + (now - self.updated) * self.limit / 60.0)
        self.updated = now

    def wait_for(self, amount: float, now: float) -> float:
        if self.limit is None or self.level is None:
            return 0.0
        self._refill(now)
        needed = min(amount, self.capacity)  # a request larger than the bucket waits for a full one
        return 0.0 if self.level >= needed else (needed - self.level) * 60.0 / self.limit

    def take(self, amount: float, now: float) -> None:
        if self.level is not None:
            self._refill(now)
            self.level -= amount

    def observe(self, limit: float, remaining: float, reset_s: float | None, now: float) -> None:
        """Trust the lower of our estimate and the server's: requests in flight are not in its figure."""
        self._refill(now)
        self.limit = limit
        full = remaining + reset_s * limit / 60.0 if reset_s is not None else limit
        self.capacity = max(1.0, min(limit, full))
        self.level = remaining if self.level is None else min(self.level, remaining)


class HeaderPacer:
    """Waits before a send while the server's request or token budget (as last reported) is spent."""

    def __init__(self, rpm: int | None = None, tpm: int | None = None, enabled: bool = True):
        self.enabled = enabled
        self.requests = _Budget(rpm)
        self.tokens = _Budget(tpm)
        self.paused_until = 0.0

    def delay(self, tokens: int, now: float) -> float:
        if not self.enabled:
            return 0.0
        return max(self.paused_until - now, self.requests.wait_for(1, now), self.tokens.wait_for(tokens, now))

    async def acquire(self, tokens: int, deadline: float) -> None:
        while True:
            now = time.monotonic()
            wait = self.delay(tokens, now)
            if wait <= 0:
                if self.enabled:
                    self.requests.take(1, now)
                    self.tokens.take(tokens, now)
                return
            if now + wait > deadline:
                raise _DeadlineExceeded(wait)
            await asyncio.sleep(min(wait, 1.0))

    def observe(self, status: int, headers: httpx.Headers) -> None:
        now = time.monotonic()
        seen = False
        for name, budget in (("requests", self.requests), ("tokens", self.tokens)):
            limit, remaining = headers.get(f"x-ratelimit-limit-{name}"), headers.get(f"x-ratelimit-remaining-{name}")
            if limit is None or remaining is None:
                continue
            try:
                reset_s = parse_reset(headers.get(f"x-ratelimit-reset-{name}"))
                budget.observe(float(limit), float(remaining), reset_s, now)
                seen = True
            except ValueError:
                continue
        if status == 429 and not seen:  # a 429 with nothing to go by: everyone waits as told
            self.paused_until = max(self.paused_until, now + (retry_after_s(headers) or 1.0))


class _DeadlineExceeded(Exception):
    def __init__(self, wait_s: float):
        super().__init__(f"would have to wait {wait_s:.1f}s")
        self.wait_s = wait_s


# --------------------------------------------------------------------------------------------
# HTTP-level counting
# --------------------------------------------------------------------------------------------
class HttpMeter:
    """Turns HTTP outcomes into ApiCounters (and feeds the pacer)."""

    def __init__(self, model: str, prices: dict[str, tuple[float, float]] | None, pacer: HeaderPacer):
        self.model = model
        self.price_in, self.price_out = price_for(model, prices)
        self.pacer = pacer
        self.counters = ApiCounters()

    def sent(self) -> None:
        self.counters.add(calls=1)

    def failed(self, timeout: bool) -> None:
        self.counters.add(errors=1, timeouts=1 if timeout else 0)

    def answered(self, status: int, headers: httpx.Headers, body: bytes, elapsed_s: float) -> None:
        self.pacer.observe(status, headers)
        if not 200 <= status < 300:
            self.counters.add(errors=1, rate_limited=1 if status == 429 else 0)
            return
        self.counters.latencies_s.append(elapsed_s)
        usage = _usage_of(headers, body)
        if usage:
            tokens_in = int(usage.get("prompt_tokens") or 0)
            tokens_out = int(usage.get("completion_tokens") or 0)
            cost = (tokens_in * self.price_in + tokens_out * self.price_out) / 1_000_000
            self.counters.add(tokens_in=tokens_in, tokens_out=tokens_out, cost_usd=cost)


def _usage_of(headers: httpx.Headers, raw: bytes) -> dict | None:
    if "json" not in headers.get("content-type", ""):
        return None
    try:
        decoded = httpx.Response(200, headers=headers, content=raw)  # undoes any content-encoding
        usage = decoded.json().get("usage")
    except (ValueError, AttributeError, httpx.DecodingError):
        return None
    return usage if isinstance(usage, dict) else None


class CountingTransport(httpx.AsyncBaseTransport):
    """Counts every request that reaches the wire and how it ended, then hands the answer on."""

    def __init__(self, inner: httpx.AsyncBaseTransport, meter: HttpMeter):
        self.inner = inner
        self.meter = meter

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.meter.sent()
        started = time.perf_counter()
        try:
            response = await self.inner.handle_async_request(request)
            try:
                raw = b"".join([chunk async for chunk in response.aiter_raw()])
            finally:
                await response.aclose()
        except httpx.TimeoutException:
            self.meter.failed(timeout=True)
            raise
        except httpx.TransportError:
            self.meter.failed(timeout=False)
            raise
        self.meter.answered(response.status_code, response.headers, raw, time.perf_counter() - started)
        return httpx.Response(response.status_code, headers=response.headers, stream=httpx.ByteStream(raw),
                              request=request, extensions=response.extensions)

    async def aclose(self) -> None:
        await self.inner.aclose()


def _proxy_for(base_url: str | None) -> str | None:
    """The environment's proxy for base_url, but never for loopback or no_proxy hosts."""
    url = urlsplit(base_url or "https://api.openai.com/v1")
    host = url.hostname or ""
    if host in ("127.0.0.1", "localhost", "::1") or host.startswith("127.") or proxy_bypass(host):
        return None
    return getproxies().get(url.scheme or "https")


# --------------------------------------------------------------------------------------------
# A private event loop per model
# --------------------------------------------------------------------------------------------
class _LoopThread:
    """An event loop running forever in a daemon thread; coroutines are submitted from any thread."""

    def __init__(self, name: str):
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name=name, daemon=True)
        self.thread.start()

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        future = asyncio.run_coroutine_threadsafe(coro, self.loop)
        try:
            return future.result()
        except BaseException:
            future.cancel()
            raise

    def stop(self) -> None:
        if self.loop.is_closed():
            return
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=10)
        if not self.thread.is_alive():
            self.loop.close()


def _shutdown(loop_thread: _LoopThread, client: openai.AsyncOpenAI | None) -> None:
    if client is not None and not loop_thread.loop.is_closed() and loop_thread.thread.is_alive():
        try:
            loop_thread.run(client.close())
        except Exception:
            pass
    loop_thread.stop()


# --------------------------------------------------------------------------------------------
# The shared machinery of the three models
# --------------------------------------------------------------------------------------------
class _ApiModel:
    """One model id on one endpoint: its client, loop, pacer, semaphore and counters."""

    def __init__(self, model: str, settings: ApiSettings | None):
        self.model = model
        self.settings = settings if settings is not None else ApiSettings.from_env()
        self.name = f"openai:{model}"
        self._pacer = HeaderPacer(self.settings.rpm, self.settings.tpm, self.settings.pace_from_headers)
        self._meter = HttpMeter(model, self.settings.prices, self._pacer)
        self._random = random.Random(self.settings.seed)
        self._loop: _LoopThread | None = None
        self._client: openai.AsyncOpenAI | None = None
        self._semaphore: asyncio.Semaphore | None = None
        self._finalizer: weakref.finalize | None = None
        self._start_lock = threading.Lock()

    # --- counters ----------------------------------------------------------------------------
    @property
    def counters(self) -> ApiCounters:
        return self._meter.counters

    def reset_counters(self) -> ApiCounters:
        """Start a fresh count (e.g. per stage); returns the previous counters."""
        previous, self._meter.counters = self._meter.counters, ApiCounters()
        return previous

    def __repr__(self) -> str:
        return f"{type(self).__name__}(model={self.model!r}, settings={self.settings!r})"

    __str__ = __repr__

    # --- lifecycle ---------------------------------------------------------------------------
    def _run(self, coro_factory: Callable[[], Coroutine[Any, Any, T]]) -> T:
        with self._start_lock:
            if self._loop is None:
                self._loop = _LoopThread(f"kura-perf-{self.name}")
                try:
                    self._client = self._loop.run(self._open())
                except BaseException:
                    self._loop.stop()
                    self._loop = None
                    raise
                self._finalizer = weakref.finalize(self, _shutdown, self._loop, self._client)
        return self._loop.run(coro_factory())

    async def _open(self) -> openai.AsyncOpenAI:
        limits = httpx.Limits(max_connections=self.settings.concurrency + 4,
                              max_keepalive_connections=self.settings.concurrency + 4)
        inner = httpx.AsyncHTTPTransport(limits=limits, proxy=_proxy_for(self.settings.base_url))
        timeout = httpx.Timeout(self.settings.timeout_s, connect=min(10.0, self.settings.timeout_s))
        http_client = httpx.AsyncClient(transport=CountingTransport(inner, self._meter), timeout=timeout)
        self._semaphore = asyncio.Semaphore(self.settings.concurrency)
        try:
            return openai.AsyncOpenAI(base_url=self.settings.base_url, api_key=self.settings.api_key,
                                      max_retries=0, timeout=timeout, http_client=http_client)
        except openai.OpenAIError as exc:
            await http_client.aclose()
            raise StageError(f"{self.name}: cannot create the API client: {exc}") from None

    def close(self) -> None:
        """Close the HTTP client on its own loop, then stop the loop. Safe to call twice."""
        with self._start_lock:
            if self._finalizer is not None:
                self._finalizer()  # runs _shutdown once
                self._finalizer = None
            elif self._loop is not None:
                self._loop.stop()
            self._loop, self._client = None, None

    def __enter__(self):
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- one request, retried within the budget ---------------------------------------------
    def _backoff_s(self, attempt: int, hint: float | None) -> float:
        """Exponential backoff with jitter, never shorter than the server's retry-after: the
        jitter spreads retries that a shared retry-after would otherwise send back all at once."""
        ceiling = min(self.settings.backoff_max_s, self.settings.backoff_base_s * 2 ** (attempt - 1))
        backoff = ceiling * self._random.uniform(0.5, 1.0)
        return backoff if hint is None else max(hint * self._random.uniform(1.0, 1.1), backoff)

    async def _with_retries(self, what: str, send: Callable[[], Awaitable[T]], est_tokens: int) -> T:
        settings = self.settings
        deadline = time.monotonic() + settings.deadline_s
        attempt = 0
        while True:
            attempt += 1
            hint: float | None = None
            _raise_if_batch_failed()
            try:
                async with self._semaphore:
                    await self._pacer.acquire(est_tokens, deadline)
                    _raise_if_batch_failed()
                    return await send()
            except _DeadlineExceeded as exc:
                raise StageError(f"{self.name}: {what} gave up before attempt {attempt}: the rate-limit pacing "
                                 f"{exc} past the {settings.deadline_s:g}s deadline") from None
            except openai.APIStatusError as exc:
                last = f"HTTP {exc.status_code} ({_error_message(exc)})"
                if exc.status_code not in RETRYABLE_STATUS:
                    raise StageError(f"{self.name}: {what} failed with {last}, which is not retryable "
                                     f"(base_url {settings.base_url or 'default'})") from None
                hint = retry_after_s(exc.response.headers)
            except openai.APITimeoutError:
                last = f"no answer within the {settings.timeout_s:g}s timeout"
            except openai.APIConnectionError as exc:
                last = f"connection error ({type(exc.__cause__).__name__ if exc.__cause__ else 'unknown'})"
            except _InvalidOutput as exc:
                last = f"invalid output ({exc})"
            if attempt > settings.max_retries:
                raise StageError(f"{self.name}: {what} failed after {attempt} attempts "
                                 f"(max_retries={settings.max_retries}); last error: {last}") from None
            delay = self._backoff_s(attempt, hint)
            if time.monotonic() + delay > deadline:
                raise StageError(f"{self.name}: {what} failed after {attempt} attempts: the next retry would "
                                 f"pass the {settings.deadline_s:g}s deadline; last error: {last}") from None
            self.counters.add(retries=1)
            await asyncio.sleep(delay)


class _InvalidOutput(Exception):
    """A 200 answer whose content does not fit the schema (retried: models are not deterministic)."""


def _error_message(exc: openai.APIStatusError) -> str:
    body = exc.body if isinstance(exc.body, dict) else {}
    message = body.get("message") or (body.get("error") or {}).get("message") if body else None
    return str(message or exc.message)[:200]


_BATCH_FAILED: ContextVar[asyncio.Event | None] = ContextVar("kura_perf_batch_failed", default=None)


class _BatchAborted(Exception):
    """Another request of the same batch failed for good: start no new attempt."""


def _raise_if_batch_failed() -> None:
    failed = _BATCH_FAILED.get()
    if failed is not None and failed.is_set():
        raise _BatchAborted


async def _all_or_fail(coros: list[Coroutine[Any, Any, T]]) -> list[T]:
    """Run concurrently, results in order. After the first failure no new attempt starts, but
    requests already on the wire are let finish, so the counters still match the server's log;
    then the first failure is raised."""
    failed = asyncio.Event()
    failures: list[BaseException] = []

    def note(task: asyncio.Future) -> None:
        if not task.cancelled() and task.exception() is not None:
            if not isinstance(task.exception(), _BatchAborted):
                failures.append(task.exception())
            failed.set()

    token = _BATCH_FAILED.set(failed)
    try:
        tasks = [asyncio.ensure_future(c) for c in coros]
    finally:
        _BATCH_FAILED.reset(token)
    for task in tasks:
        task.add_done_callback(note)
    results = await asyncio.gather(*tasks, return_exceptions=True)
    if failures:
        raise failures[0]
    return list(results)


# --------------------------------------------------------------------------------------------
# Summaries
# --------------------------------------------------------------------------------------------
class ConversationSummaryOutput(BaseModel):
    """Kura's ConversationSummary fields, as the structured-output schema."""

    model_config = ConfigDict(extra="forbid")

    summary: str = Field(description="One or two sentences: what the user did, from their perspective.")
    request: str = Field(description="Starts with: The user's overall request for the assistant is to")
    task: str = Field(description="Starts with: The task is to")
    languages: list[str] = Field(description="Main human and programming languages, lower case")
    concerning_score: int = Field(ge=1, le=5, description="1 = not concerning, 5 = very concerning")
    user_frustration: int = Field(ge=1, le=5, description="1 = not frustrated, 5 = very frustrated")
    assistant_errors: list[str] = Field(description="Errors the assistant made; empty if none")


assert tuple(ConversationSummaryOutput.model_fields) == SUMMARY_FIELDS

SUMMARY_PROMPT = """The following is a conversation between an AI assistant and a user:

<messages>
{transcript}
</messages>

Your job is to extract key information from this conversation. Be descriptive and assume neither good
nor bad faith. Do not include any personally identifiable information or proper nouns.

Extract: a summary of at most two sentences from the user's perspective; the user's overall request
("The user's overall request for the assistant is to ..."); the task ("The task is to ..."); the main
languages, human and programming, lower case; a concerning score from 1 (not at all) to 5 (very);
the user's frustration from 1 (not at all) to 5 (very); and the assistant's errors (empty if none)."""


def _strict_schema(model: type[BaseModel]) -> dict:
    """Pydantic's schema with every property required and no extras, as strict mode wants."""
    schema = model.model_json_schema()

    def tighten(node: Any) -> None:
        if isinstance(node, dict):
            if node.get("type") == "object" and "properties" in node:
                node["required"] = list(node["properties"])
                node["additionalProperties"] = False
            for value in node.values():
                tighten(value)
        elif isinstance(node, list):
            for value in node:
                tighten(value)

    tighten(schema)
    return schema


class OpenAISummaryModel(_ApiModel):
    """SummaryModel through chat completions with a json_schema response format."""

    def __init__(self, model: str = "gpt-4o-mini", settings: ApiSettings | None = None,
                 max_output_tokens: int = 512):
        super().__init__(model, settings)
        self.max_output_tokens = max_output_tokens
        self._response_format = {
            "type": "json_schema",
            "json_schema": {"name": "conversation_summary", "strict": True,
                            "schema": _strict_schema(ConversationSummaryOutput)},
        }

    def summarise(self, conversations: Sequence[Conversation]) -> list[dict]:
        return self._run(lambda: _all_or_fail([self._summarise_one(c) for c in conversations]))

    async def _summarise_one(self, conversation: Conversation) -> dict:
        messages = [{"role": "user", "content": SUMMARY_PROMPT.format(transcript=conversation.text())}]
        est = sum(estimate_tokens(m["content"]) for m in messages)

        async def send() -> dict:
            completion = await self._client.chat.completions.create(
                model=self.model, messages=messages, response_format=self._response_format,
                max_completion_tokens=self.max_output_tokens,
            )
            message = completion.choices[0].message
            if not message.content:
                raise _InvalidOutput(f"no content (refusal: {message.refusal!r})")
            try:
                return ConversationSummaryOutput.model_validate_json(message.content).model_dump()
            except ValidationError as exc:
                raise _InvalidOutput(f"summary does not fit the schema: {exc.errors()[0]['msg']}") from None

        return await self._with_retries(f"summary of chat {conversation.chat_id}", send, est)


# --------------------------------------------------------------------------------------------
# Cluster names
# --------------------------------------------------------------------------------------------
class ClusterNameOutput(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(description="An imperative sentence of at most ten words naming the cluster")
    description: str = Field(description="Two sentences in the past tense describing the cluster")


CLUSTER_PROMPT = """Summarize all the statements below into a clear, precise, two-sentence description
in the past tense, and give the group a short name (at most ten words) that is specific to it.

<positive_examples>
{examples}
</positive_examples>

Call the name_cluster function with the name and the description."""

_NAME_TOOL = {
    "type": "function",
    "function": {
        "name": "name_cluster",
        "description": "Record the name and description of a cluster of conversations.",
        "parameters": _strict_schema(ClusterNameOutput),
        "strict": True,
    },
}


class OpenAIClusterNamer(_ApiModel):
    """ClusterNamer through a forced function call returning {name, description}."""

    def __init__(self, model: str = "gpt-4o-mini", settings: ApiSettings | None = None,
                 max_examples: int = 25, max_output_tokens: int = 256):
        super().__init__(model, settings)
        self.max_examples = max_examples
        self.max_output_tokens = max_output_tokens

    def name_clusters(self, groups: Sequence[Sequence[str]]) -> list[tuple[str, str]]:
        return self._run(lambda: _all_or_fail([self._name_one(i, g) for i, g in enumerate(groups)]))

    async def _name_one(self, index: int, texts: Sequence[str]) -> tuple[str, str]:
        examples = "\n".join(t.replace("\n", " ") for t in list(texts)[: self.max_examples])
        messages = [{"role": "user", "content": CLUSTER_PROMPT.format(examples=examples)}]
        est = estimate_tokens(messages[0]["content"])

        async def send() -> tuple[str, str]:
            completion = await self._client.chat.completions.create(
                model=self.model, messages=messages, tools=[_NAME_TOOL],
                tool_choice={"type": "function", "function": {"name": "name_cluster"}},
                max_completion_tokens=self.max_output_tokens,
            )
            calls = completion.choices[0].message.tool_calls or []
            if not calls:
                raise _InvalidOutput("no tool call in the answer")
            try:
                named = ClusterNameOutput.model_validate_json(calls[0].function.arguments)
            except ValidationError as exc:
                raise _InvalidOutput(f"tool arguments do not fit the schema: {exc.errors()[0]['msg']}") from None
            return named.name.strip(), named.description.strip()

        return await self._with_retries(f"name of cluster {index}", send, est)


# --------------------------------------------------------------------------------------------
# Embeddings
# --------------------------------------------------------------------------------------------
class OpenAIEmbedding(_ApiModel):
    """EmbeddingModel through /v1/embeddings: batches of `batch_size` texts, up to `concurrency` at once.

    `dimension` is sent as `dimensions` for text-embedding-3 models (the API shortens the vectors);
    other models must natively produce `dimension`-d vectors. Empty texts are sent as " " because the
    API rejects empty strings.
    """

    def __init__(self, model: str = "text-embedding-3-small", dimension: int | None = None,
                 settings: ApiSettings | None = None, batch_size: int = 100):
        super().__init__(model, settings)
        self.dimension = dimension or NATIVE_EMBEDDING_DIMENSIONS.get(model, 1536)
        if not 1 <= batch_size <= 2048:
            raise ValueError(f"batch_size must be within 1..2048 (got {batch_size})")
        self.batch_size = batch_size
        self._send_dimensions = model.startswith("text-embedding-3")

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dimension), dtype=np.float32)
        batches = [list(texts[i : i + self.batch_size]) for i in range(0, len(texts), self.batch_size)]
        parts = self._run(lambda: _all_or_fail([self._embed_batch(i, b) for i, b in enumerate(batches)]))
        return np.concatenate(parts).astype(np.float32, copy=False)

    async def _embed_batch(self, index: int, texts: list[str]) -> np.ndarray:
        inputs = [t if t else " " for t in texts]
        est = sum(estimate_tokens(t) for t in inputs)
        extra = {"dimensions": self.dimension} if self._send_dimensions else {}

        async def send() -> np.ndarray:
            response = await self._client.embeddings.create(
                model=self.model, input=inputs, encoding_format="base64", **extra,
            )
            rows = sorted(response.data, key=lambda d: d.index)
            if len(rows) != len(inputs):
                raise _InvalidOutput(f"{len(rows)} vectors for {len(inputs)} inputs")
            vectors = np.stack([_decode_vector(r.embedding) for r in rows])
            if vectors.shape[1] != self.dimension:
                raise StageError(f"{self.name}: the API returns {vectors.shape[1]}-d vectors, "
                                 f"expected {self.dimension}-d")
            return vectors

        return await self._with_retries(f"embedding batch {index} ({len(inputs)} texts)", send, est)


def _decode_vector(data: Any) -> np.ndarray:
    if isinstance(data, str):
        return np.frombuffer(base64.b64decode(data), dtype="<f4")
    return np.asarray(data, dtype=np.float32)
