"""The machinery the three API-backed models share: one model id on one endpoint, with its client,
private event loop, pacer, in-flight bound, retries and counters."""

from __future__ import annotations

import threading
import time
import weakref
from typing import Any, Awaitable, Callable, Coroutine, TypeVar

import httpx
import openai

from kura_perf.errors import StageError
from kura_perf.meter.api import ApiCounters
from kura_perf.meter.request_log import REQUEST_CONTEXT, RequestLog
from kura_perf.models.openai_api.adaptive import AdaptiveConcurrency, InflightLimit
from kura_perf.models.openai_api.batch import raise_if_batch_failed
from kura_perf.models.openai_api.http import CountingTransport, HttpMeter, ShardedTransport, proxy_for
from kura_perf.models.openai_api.loop import LoopThread, shutdown
from kura_perf.models.openai_api.pacer import DeadlineExceeded, HeaderPacer
from kura_perf.models.openai_api.retries import RetryPolicy, classify
from kura_perf.models.openai_api.settings import ApiSettings
from kura_perf.models.protocols import CountsApiCalls

T = TypeVar("T")


class ApiModel(CountsApiCalls):
    """One model id on one endpoint: its client, loop, pacer, semaphore and counters.
    `request_kind` names its requests in the api log (summary, cluster_name, embeddings)."""

    request_kind: str | None = None

    def __init__(self, model: str, settings: ApiSettings):
        self.model = model
        self.settings = settings  # required: built by the model factory from the run's settings
        self.name = f"openai:{model}"
        self._pacer = HeaderPacer(self.settings.rpm, self.settings.tpm, self.settings.pace_from_headers)
        log = RequestLog(self.settings.api_log) if self.settings.api_log else None
        self._meter = HttpMeter(model, self.settings.prices, self._pacer, log)
        self._retry = RetryPolicy(self.settings, on_retry=lambda: self.counters.add(retries=1))
        self._loop: LoopThread | None = None
        self._client: openai.AsyncOpenAI | None = None
        self._semaphore: InflightLimit | None = None
        self._controller: AdaptiveConcurrency | None = None
        self._start_stats(self._meter.counters)
        self._finalizer: weakref.finalize | None = None
        self._start_lock = threading.Lock()

    # --- counters ----------------------------------------------------------------------------
    @property
    def counters(self) -> ApiCounters:
        return self._meter.counters

    def reset_counters(self) -> ApiCounters:
        """Start a fresh count (e.g. per stage); returns the previous counters."""
        previous, self._meter.counters = self._meter.counters, ApiCounters()
        self._start_stats(self._meter.counters)
        return previous

    def _start_stats(self, counters: ApiCounters) -> None:
        counters.concurrency.adaptive = self.settings.adaptive
        counters.concurrency.cap = self.settings.inflight_cap
        if self._controller is not None:  # a fresh count: the highest target from now on
            self._controller.target_max = counters.concurrency.target_max = self._controller.target

    def __repr__(self) -> str:
        return f"{type(self).__name__}(model={self.model!r}, settings={self.settings!r})"

    __str__ = __repr__

    # --- lifecycle ---------------------------------------------------------------------------
    def _run(self, coro_factory: Callable[[], Coroutine[Any, Any, T]]) -> T:
        with self._start_lock:
            if self._loop is None:
                self._loop = LoopThread(f"kura-perf-{self.name}")
                try:
                    self._client = self._loop.run(self._open())
                except BaseException:
                    self._loop.stop()
                    self._loop = None
                    raise
                self._finalizer = weakref.finalize(self, shutdown, self._loop, self._client)
        return self._loop.run(self._timed(coro_factory))

    async def _timed(self, coro_factory: Callable[[], Coroutine[Any, Any, T]]) -> T:
        """Run on the client's loop, counting that loop thread's CPU and wall time: a loop busy nearly
        all the time means the client's own CPU, not the endpoint, set the pace."""
        cpu, wall = time.thread_time(), time.perf_counter()
        try:
            return await coro_factory()
        finally:
            stats = self.counters.concurrency
            stats.loop_cpu_s += time.thread_time() - cpu
            stats.loop_wall_s += time.perf_counter() - wall
            if self._controller is not None:
                stats.target_max = max(stats.target_max, self._controller.target_max)

    async def _open(self) -> openai.AsyncOpenAI:
        # As many connections as requests may be in flight (adaptive: up to max_concurrency), so the
        # pool is never a hidden bound under the one we set; idle ones are closed by httpx as usual.
        connections = self.settings.inflight_cap + 4
        inner = ShardedTransport(connections, proxy=proxy_for(self.settings.base_url))
        timeout = httpx.Timeout(self.settings.timeout_s, connect=min(10.0, self.settings.timeout_s))
        http_client = httpx.AsyncClient(transport=CountingTransport(inner, self._meter), timeout=timeout)
        self._semaphore = InflightLimit(self.settings.concurrency)
        if self.settings.adaptive:
            self._controller = AdaptiveConcurrency(self._semaphore, self._pacer, self.settings.concurrency,
                                                   self.settings.max_concurrency)
            self._meter.controller = self._controller
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
                self._finalizer()  # runs shutdown once
                self._finalizer = None
            elif self._loop is not None:
                self._loop.stop()
            self._loop, self._client = None, None

    def __enter__(self):
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- one request, paced and retried within the budget -------------------------------------
    async def _with_retries(self, what: str, send: Callable[[], Awaitable[T]], prompt_tokens: int,
                            max_completion_tokens: int = 0) -> T:
        """Send one request: wait for a place in flight and for the rate-limit budget, send, and
        retry what is worth retrying (see retries.py)."""
        deadline = time.monotonic() + self.settings.deadline_s
        attempts = 0

        async def attempt() -> T:
            nonlocal attempts
            attempts += 1
            REQUEST_CONTEXT.set((self.request_kind, attempts - 1))  # for the api log, read in this task
            raise_if_batch_failed()
            try:
                async with self._semaphore:
                    estimate = self._pacer.estimate(prompt_tokens, max_completion_tokens)
                    await self._pacer.acquire(estimate, deadline)
                    raise_if_batch_failed()
                    return await send()
            except DeadlineExceeded as exc:
                raise StageError(f"{self.name}: {what} gave up before attempt {attempts}: the rate-limit pacing "
                                 f"{exc} past the {self.settings.deadline_s:g}s deadline") from None
            except Exception as exc:  # noqa: BLE001 - sorted into retry / give up
                outcome = classify(exc, self.name, what, self.settings)
                if outcome is exc:
                    raise
                raise outcome from None

        return await self._retry.run(self.name, what, attempt, deadline)
