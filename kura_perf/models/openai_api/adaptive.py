"""Adaptive concurrency: keep enough requests in flight to run at the binding rate limit.

Why: the pacer (pacer.py) stops a client from going over a limit, but it cannot make it go faster than
its in-flight bound allows. With a fixed 50 in flight and ~1 s per call a client sends ~50 calls/s, a
tenth of a tier-5 chat limit (30,000 RPM = 500 calls/s). Little's law says how many must be in flight to
sustain a rate: in-flight = rate x latency. So the bound follows

    target = ceil(min(binding rate x latency, GAIN x delivered rate x lowest latency) x HEADROOM x factor) + 1,
    capped at max_concurrency

- binding rate: requests/s the tighter limit allows, min(RPM / 60, TPM / 60 / tokens per request), with
  the limits from the x-ratelimit-* headers (or the profile's hints) as the pacer last read them and
  the tokens per request learned from `usage`;
- delivered rate: the most successful answers per second over the last few seconds, times GAIN = 2.
  Why: a server (or a box) that cannot answer faster makes every answer slower as more are sent, and
  Little's law over that latency would then ask for ever more in flight (measured: a loaded simulator
  went from 6 s to 26 s per answer as the bound chased it to 900). Growth is only allowed while
  answers come back faster: it doubles at most per second, as TCP's slow start does per round trip; the
  guard multiplies by the lowest latency seen (the uncongested one, as BBR's min RTT), so latency that
  grows only because more is in flight never raises it;
- latency: a moving average of the time from send to answer of successful requests, but at most
  LATENCY_CAP times the lowest that average has been (queueing is not a reason for more in flight);
- HEADROOM: latencies vary (lognormal tails) and a slot also covers the wait at the pacer, so a little
  more than the mean is kept in flight; going over does no harm, the pacer still spaces the sends;
- factor: an AIMD correction, for 429s the pacer did not prevent (another client on the same key, a
  limit lower than the headers say): x DECREASE on a 429 (at most once per mean latency, so one burst
  of 429s is one cut), then back up by about one request per round trip of successful answers.

Before a second of answers has been counted, the delivered rate is taken as what the starting bound
delivers at the latency seen (start / latency), so the ramp starts with the first answer; a one-second
window with an idle gap of IDLE_GAP_S or more in it (the pacer's one-request probe) is not counted.
Against an endpoint that never says its limits, the bound is the profile's fixed `concurrency` times
the factor. The bound never exceeds `max_concurrency`,
and the HTTP client's connection pool is sized to it (base.py), so the pool is never the hidden limit.
"""

from __future__ import annotations

import asyncio
import collections
import math
import time

from kura_perf.models.openai_api.pacer import HeaderPacer

HEADROOM = 1.5
GAIN = 2.0
LATENCY_CAP = 3.0
RATE_WINDOWS = 5  # one-second counts of answers kept for the delivered rate (its maximum is used)
IDLE_GAP_S = 1.0  # this long without an answer: the window of answers in progress is dropped (_count_delivery)
WARM_UP_ANSWERS = 10  # answers before the lowest latency average is trusted
DECREASE = 0.7
MIN_FACTOR = 0.05
LATENCY_WEIGHT = 0.1  # of the newest answer in the moving average of latency (and of tokens per request)


class InflightLimit:
    """An asyncio semaphore whose size can change while requests wait for it (FIFO, cancellation-safe)."""

    def __init__(self, size: int):
        self.size = max(1, int(size))
        self.held = 0
        self._waiters: collections.deque[asyncio.Future] = collections.deque()

    async def acquire(self) -> None:
        if self.held < self.size and not self._waiters:
            self.held += 1
            return
        waiter = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            await waiter
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled():
                self.release()  # granted just as it was cancelled: hand the place on
            else:
                try:
                    self._waiters.remove(waiter)
                except ValueError:
                    pass
            raise

    def release(self) -> None:
        self.held -= 1
        self._wake()

    def resize(self, size: int) -> None:
        """A smaller size takes effect as requests finish; a larger one lets waiters in now."""
        self.size = max(1, int(size))
        self._wake()

    def _wake(self) -> None:
        while self._waiters and self.held < self.size:
            waiter = self._waiters.popleft()
            if waiter.done():
                continue
            self.held += 1
            waiter.set_result(None)

    async def __aenter__(self) -> "InflightLimit":
        await self.acquire()
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.release()


class AdaptiveConcurrency:
    """Sets an InflightLimit's size from the pacer's limits, observed latency and 429s (see module doc)."""

    def __init__(self, limit: InflightLimit, pacer: HeaderPacer, start: int, cap: int):
        self.limit = limit
        self.pacer = pacer
        self.cap = max(1, cap)
        self.start = max(1, min(start, self.cap))
        self.factor = 1.0
        self.latency_s: float | None = None
        self.tokens_per_request: float | None = None
        self.target = self.start
        self.target_max = self.start
        self._last_cut = -math.inf
        self.lowest_latency_s: float | None = None
        self._answers = 0
        self._window_start: float | None = None
        self._window_count = 0
        self._last_answer: float | None = None
        self._delivered: collections.deque[float] = collections.deque(maxlen=RATE_WINDOWS)
        limit.resize(self.start)

    def _count_delivery(self, now: float) -> None:
        # A second or more without any answer: the window in progress measured a gap, not the server's
        # pace (the client was not sending: the pacer's one-request probe, nothing left to send), so it is
        # dropped and a new one starts. Why: the probe's lone answer, counted over the ~2 s until the next
        # ones, read as 0.5 answers/s and cut the bound from 50 to 6 just as the ramp began (measured, tier 3).
        if self._window_start is None or (self._last_answer is not None and now - self._last_answer >= IDLE_GAP_S):
            self._window_start, self._window_count = now, 0
        elif now - self._window_start >= 1.0:
            self._delivered.append(self._window_count / (now - self._window_start))
            self._window_start, self._window_count = now, 0
        self._window_count += 1
        self._last_answer = now

    def delivered_rate(self) -> float | None:
        """The most answers per second over the last few one-second windows; None before the first."""
        return max(self._delivered) if self._delivered else None

    def latency_for_target(self) -> float | None:
        if self.latency_s is None or self.lowest_latency_s is None:
            return self.latency_s
        return min(self.latency_s, LATENCY_CAP * self.lowest_latency_s)

    def binding_rate(self) -> float | None:
        """Requests per second the tighter of the known limits allows; None while none is known."""
        rates = []
        if self.pacer.requests.limit:
            rates.append(self.pacer.requests.limit / 60.0)
        if self.pacer.tokens.limit and self.tokens_per_request:
            rates.append(self.pacer.tokens.limit / 60.0 / self.tokens_per_request)
        return min(rates) if rates else None

    def answered(self, status: int, latency_s: float, tokens: int | None = None, now: float | None = None) -> None:
        """One answer is in (called by the HTTP layer, on the client's loop; `now`: time.monotonic())."""
        now = time.monotonic() if now is None else now
        if status == 429:
            if now - self._last_cut >= (self.latency_s or 1.0):
                self.factor = max(MIN_FACTOR, self.factor * DECREASE)
                self._last_cut = now
        elif 200 <= status < 300:
            self.latency_s = latency_s if self.latency_s is None else \
                self.latency_s + LATENCY_WEIGHT * (latency_s - self.latency_s)
            self._answers += 1
            if self._answers >= WARM_UP_ANSWERS:
                self.lowest_latency_s = min(self.lowest_latency_s or math.inf, self.latency_s)
            self._count_delivery(now)
            if tokens:
                self.tokens_per_request = float(tokens) if self.tokens_per_request is None else \
                    self.tokens_per_request + LATENCY_WEIGHT * (tokens - self.tokens_per_request)
            if self.factor < 1.0:
                self.factor = min(1.0, self.factor + 1.0 / max(self.target, 1))
        else:
            return
        self._retarget()

    def _retarget(self) -> None:
        rate, delivered, latency = self.binding_rate(), self.delivered_rate(), self.latency_for_target()
        if delivered is None and latency:
            # No second of answers counted yet: the starting bound delivers start / latency (Little's law),
            # so growth begins with the first answer instead of a second later. Why: the bound otherwise
            # stayed at the start for a whole round trip after the limits were known (measured at tier 3:
            # ~3 s of a 190 s stage at a quarter of the limit).
            delivered = self.start / latency
        if rate is None or delivered is None or latency is None:
            target = self.start * self.factor
        else:
            # The delivered-rate guard takes the lowest latency seen, not the current one: when the box (or
            # the server) is what limits, more in flight only makes each answer slower (Little's law), and
            # a guard over the current latency grew with it, up to LATENCY_CAP x the useful bound, without
            # one more answer a second. Over the lowest latency it rises only when answers come back faster.
            floor = self.lowest_latency_s or latency
            target = min(rate * latency, GAIN * delivered * floor) * HEADROOM * self.factor + 1
        self.target = max(1, min(self.cap, math.ceil(target)))
        self.target_max = max(self.target_max, self.target)
        if self.target != self.limit.size:
            self.limit.resize(self.target)
