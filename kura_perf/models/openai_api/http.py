"""Counting at the HTTP layer: every request that reaches the wire, and how it ended.

The AsyncOpenAI client gets an httpx.AsyncClient whose transport is wrapped by `CountingTransport`:
every HTTP exchange (retries included) is counted into the model's `ApiCounters` -- calls, non-2xx
answers and transport failures as errors, 429s, client timeouts, latency of successful answers,
tokens and cost from `usage`. The SDK's own retries are off (they would be invisible here). With an
api log (ApiSettings.api_log) every exchange is also one line of the request log (meter/request_log.py).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from urllib.parse import urlsplit
from urllib.request import getproxies, proxy_bypass

import httpx

from kura_perf.meter.api import ApiCounters
from kura_perf.meter.request_log import REQUEST_CONTEXT, RequestEntry, RequestLog, endpoint_of, now_iso
from kura_perf.models.openai_api.pacer import PENDING_ESTIMATE, HeaderPacer
from kura_perf.models.openai_api.prices import Prices, price_for, unpriced_warning


class HttpMeter:
    """Turns HTTP outcomes into ApiCounters, and feeds the pacer what the server said."""

    def __init__(self, model: str, prices: Prices | None, pacer: HeaderPacer, log: RequestLog | None = None):
        self.model = model
        self.price = price_for(model, prices)  # None: unknown, the cost stays unknown (never $0)
        self.pacer = pacer
        self.counters = ApiCounters()
        self.log = log
        self.inflight = 0  # requests on the wire now
        self._changed = 0.0  # when `inflight` last changed (time.monotonic)
        self.controller = None  # adaptive.AdaptiveConcurrency, told every answer; None: a fixed bound

    def _inflight_change(self, delta: int) -> None:
        """Keep the in-flight integral, maximum and span (ConcurrencyStats) as requests go and come back."""
        now = time.monotonic()
        stats = self.counters.concurrency
        if stats.first_sent is None:
            stats.first_sent = now
        elif self.inflight:
            stats.inflight_area_s += self.inflight * (now - max(self._changed, stats.first_sent))
        self._changed = now
        self.inflight = max(0, self.inflight + delta)
        if delta > 0:
            stats.inflight_max = max(stats.inflight_max, self.inflight)
        else:
            stats.last_done = now
            requests, tokens = self.pacer.requests, self.pacer.tokens
            stats.limit_rpm, stats.limit_tpm = requests.limit, tokens.limit
            stats.capacity_requests, stats.capacity_tokens = requests.capacity, tokens.capacity

    def logged(self, path: str, status: int | str, elapsed_s: float, usage: dict | None = None,
               headers: httpx.Headers | None = None) -> None:
        """One line of the request log (if kept): never content, never a header but the two limits."""
        if self.log is None:
            return
        kind, retry = REQUEST_CONTEXT.get()
        usage = usage or {}
        self.log.append(RequestEntry(
            ts=now_iso(), model=self.model, endpoint=endpoint_of(path), kind=kind, status=status,
            latency_s=round(elapsed_s, 6), retry=retry,
            prompt_tokens=_count(usage.get("prompt_tokens")), completion_tokens=_count(usage.get("completion_tokens")),
            limit_requests=_count((headers or {}).get("x-ratelimit-limit-requests")),
            limit_tokens=_count((headers or {}).get("x-ratelimit-limit-tokens"))))

    def sent(self) -> None:
        self.counters.add(calls=1)
        self._inflight_change(+1)

    def withdrawn(self) -> None:
        """The request was cancelled on its way: it leaves the in-flight count, nothing else is counted."""
        self._inflight_change(-1)

    def failed(self, timeout: bool) -> None:
        self._inflight_change(-1)
        self.counters.add(errors=1, timeouts=1 if timeout else 0)
        self.pacer.failed()

    def answered(self, status: int, headers: httpx.Headers, body: bytes, elapsed_s: float,
                 path: str = "") -> None:
        estimate = PENDING_ESTIMATE.get()
        if not 200 <= status < 300:
            self.pacer.refused(estimate)  # before observe: the headers then cap what was handed back
            self.pacer.observe(status, headers)
            self._inflight_change(-1)
            if self.controller is not None:
                self.controller.answered(status, elapsed_s)
            self.counters.add(errors=1, rate_limited=1 if status == 429 else 0)
            self.logged(path, status, elapsed_s, headers=headers)
            return
        self.pacer.observe(status, headers)
        self._inflight_change(-1)
        self.counters.latencies_s.append(elapsed_s)
        usage = usage_of(headers, body)
        self.logged(path, status, elapsed_s, usage, headers)
        tokens_in = tokens_out = 0
        if usage:
            tokens_in = int(usage.get("prompt_tokens") or 0)
            tokens_out = int(usage.get("completion_tokens") or 0)
        if self.controller is not None:
            self.controller.answered(status, elapsed_s, tokens_in + tokens_out)
        if usage:
            self.pacer.settle(estimate, tokens_in, tokens_out)
            if self.price is None:
                self.counters.note_unpriced(self.model, unpriced_warning(self.model))
                self.counters.add(tokens_in=tokens_in, tokens_out=tokens_out)
            else:
                cost = (tokens_in * self.price[0] + tokens_out * self.price[1]) / 1_000_000
                self.counters.add(tokens_in=tokens_in, tokens_out=tokens_out, cost_usd=cost)


def _count(value) -> int | None:
    """A token count or limit as an int (headers are strings), None when absent or not a number."""
    try:
        return int(value) if value is not None else None
    except (TypeError, ValueError):
        return None


def usage_of(headers: httpx.Headers, raw: bytes) -> dict | None:
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
            self.meter.logged(request.url.path, "timeout", time.perf_counter() - started)
            raise
        except httpx.TransportError:
            self.meter.failed(timeout=False)
            self.meter.logged(request.url.path, "connection_error", time.perf_counter() - started)
            raise
        except BaseException:  # cancelled (a stage stopped): no longer in flight, and not an answer
            self.meter.withdrawn()
            raise
        self.meter.answered(response.status_code, response.headers, raw, time.perf_counter() - started,
                            request.url.path)
        return httpx.Response(response.status_code, headers=response.headers, stream=httpx.ByteStream(raw),
                              request=request, extensions=response.extensions)

    async def aclose(self) -> None:
        await self.inner.aclose()


# Connections per pool. httpcore's pool rescans every connection and queued request each time a request
# starts or ends (and, for each idle connection, the whole pool again), so one pool of ~900 connections
# cost the reference's summaries ~26 ms of client CPU per call at 10K (client-CPU-bound); small pools keep
# each rescan short whatever the concurrency.
POOL_CONNECTIONS = 64


class ShardedTransport(httpx.AsyncBaseTransport):
    """`connections` spread over pools of at most `pool_size`, each request to the least busy pool: the
    same number of connections as one pool, without its per-request cost that grows with its size."""

    def __init__(self, connections: int, proxy: str | None = None, pool_size: int = POOL_CONNECTIONS,
                 factory: Callable[[httpx.Limits], httpx.AsyncBaseTransport] | None = None):
        count = max(1, math.ceil(connections / pool_size))
        per_pool = math.ceil(connections / count)
        limits = httpx.Limits(max_connections=per_pool, max_keepalive_connections=per_pool)
        make = factory or (lambda lim: httpx.AsyncHTTPTransport(limits=lim, proxy=proxy))
        self.pools = [make(limits) for _ in range(count)]
        self.limits = limits
        self.busy = [0] * count

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        index = min(range(len(self.pools)), key=self.busy.__getitem__)
        self.busy[index] += 1
        try:
            return await self.pools[index].handle_async_request(request)
        finally:
            self.busy[index] -= 1

    async def aclose(self) -> None:
        for pool in self.pools:
            await pool.aclose()


def proxy_for(base_url: str | None) -> str | None:
    """The environment's proxy for base_url, but never for loopback or no_proxy hosts."""
    url = urlsplit(base_url or "https://api.openai.com/v1")
    host = url.hostname or ""
    if host in ("127.0.0.1", "localhost", "::1") or host.startswith("127.") or proxy_bypass(host):
        return None
    return getproxies().get(url.scheme or "https")

