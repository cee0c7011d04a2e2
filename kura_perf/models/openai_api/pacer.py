"""Client-side pacing: stay under the server's requests- and tokens-per-minute limits.

Why each part is there (measured with `kura-perf sweep` against the simulator, see README):
- The budget comes from the x-ratelimit-* headers (limit, remaining, time to full), refilled at
  limit/60 per second, as the server's own bucket is.
- Slow start: until the first answer has told us the limits, one request is in flight. At
  concurrency 50 the first 50 requests would otherwise go out blind and, with chat prompts of
  ~1,200 tokens against a 5-second burst, most of them would meet a 429.
- What a request costs is estimated before it is sent (prompt tokens plus the completion tokens
  this model has been answering with, learned from `usage`) and settled once its usage is known,
  so the client's bucket tracks what the server charged rather than drifting short (the old
  prompt-only estimate ran 20-40% below the server's count and drew 23-42% 429s at the TPM limit).
- A 429 hands its tokens back (the server admitted nothing) and the headers it carries reset the
  estimate.
- A little slack: the client refills at 99% of the limit and keeps a headroom of one request (at
  most a quarter of the bucket) unspent, so requests that the network or a busy event loop bunch
  together on their way do not meet an empty bucket at the server. The headroom is what absorbs the
  bunching; the rate margin only covers drift, and each point of it is a point of the limit lost over
  the whole stage (98% drew no 429 at tier 3 10K either, and left the stage at 89.9% of the limit).
"""

from __future__ import annotations

import asyncio
import time
from contextvars import ContextVar

import httpx

from kura_perf.models.openai_api.headers import parse_reset, retry_after_s

# The estimate taken for the request being sent by the current task, read by the HTTP layer when
# the answer's usage arrives (the transport runs in the sending task's context).
PENDING_ESTIMATE: ContextVar[float | None] = ContextVar("kura_perf_pending_estimate", default=None)


RATE_MARGIN = 0.99  # refill at this share of the server's rate
HEADROOM_SHARE = 0.25  # keep min(one request, this share of the bucket) unspent


class Budget:
    """The client's estimate of one server bucket: unknown (no limit) until a header or hint says.

    It refills at limit/60 per second up to the bucket's capacity, which the headers give away:
    remaining + reset_seconds * limit/60 (the reset header is the time until the bucket is full).
    Without a reset header the capacity is taken to be the whole per-minute limit."""

    def __init__(self, limit: int | None):
        self.limit = float(limit) if limit else None
        self.limit_hint = self.limit  # a capacity still equal to the hint has not been measured yet
        self.capacity = self.limit
        self.level = self.limit
        self.updated = time.monotonic()

    @property
    def known(self) -> bool:
        return self.limit is not None and self.level is not None

    @property
    def rate(self) -> float:
        """What the client lets itself spend per second: a little under the server's refill."""
        return RATE_MARGIN * self.limit / 60.0

    def _refill(self, now: float) -> None:
        if self.known and now > self.updated:
            self.level = min(self.capacity, self.level + (now - self.updated) * self.rate)
        self.updated = now

    def wait_for(self, amount: float, now: float) -> float:
        if not self.known:
            return 0.0
        self._refill(now)
        needed = min(amount, self.capacity)  # a request larger than the bucket waits for a full one
        needed = min(self.capacity, needed + min(amount, HEADROOM_SHARE * self.capacity))
        return 0.0 if self.level >= needed else (needed - self.level) / self.rate

    def take(self, amount: float, now: float) -> None:
        if self.level is not None:
            self._refill(now)
            self.level -= amount

    def give_back(self, amount: float, now: float) -> None:
        if self.level is not None:
            self._refill(now)
            self.level = min(self.capacity, self.level + amount)

    def observe(self, limit: float, remaining: float, reset_s: float | None, now: float) -> None:
        """Trust the lower of our estimate and the server's: the header is a snapshot taken when the
        request was admitted, so requests sent since are in our figure but not in its.

        `remaining` is a whole number (floored), which on a small bucket hides up to one request:
        the reset time (to the millisecond) is more precise, so the server's level is taken as
        capacity - reset * rate, the capacity being the largest remaining + reset * rate seen."""
        self._refill(now)
        self.limit = limit
        rate = limit / 60.0
        if reset_s is None:
            full, server_level = limit, remaining
        else:
            full = remaining + reset_s * rate
        seen = max(1.0, min(limit, full))
        self.capacity = seen if self.capacity is None or self.capacity == self.limit_hint else max(self.capacity, seen)
        if reset_s is not None:
            server_level = max(remaining, min(self.capacity - reset_s * rate, remaining + 1.0))
        self.level = server_level if self.level is None else min(self.level, server_level)


class HeaderPacer:
    """Waits before a send while the server's request or token budget (as last reported) is spent."""

    # Weight of the newest answer in the learned completion size (an exponential moving average).
    LEARNING_RATE = 0.2

    def __init__(self, rpm: int | None = None, tpm: int | None = None, enabled: bool = True,
                 slow_start: bool = True):
        self.enabled = enabled
        self.requests = Budget(rpm)
        self.tokens = Budget(tpm)
        self.paused_until = 0.0
        self.expected_completion: float | None = None  # learned from usage; None until the first answer
        # Slow start only when nothing is known yet: hints (rpm/tpm) already tell the limits.
        self._blind = enabled and slow_start and not (rpm or tpm)
        self._probe_out = False
        self._told: asyncio.Event | None = None  # created on the loop that uses it
        self._gate: asyncio.Lock | None = None  # likewise: one waiter at a time polls the budget

    # --- estimates ---------------------------------------------------------------------------
    def estimate(self, prompt_tokens: int, max_completion_tokens: int = 0) -> float:
        """Tokens a request will cost: its prompt, plus the completion size seen so far (before any
        answer, the completion limit: the server may charge it, and it is the safe side)."""
        completion = self.expected_completion if self.expected_completion is not None else max_completion_tokens
        return float(prompt_tokens + min(completion, max_completion_tokens or completion))

    def delay(self, tokens: float, now: float) -> float:
        if not self.enabled:
            return 0.0
        return max(self.paused_until - now, self.requests.wait_for(1, now), self.tokens.wait_for(tokens, now))

    async def acquire(self, tokens: float, deadline: float) -> None:
        """Wait until a request of `tokens` fits, take it from the budgets, and note the estimate so
        the answer's usage can settle it (`settle`)."""
        await self._wait_for_first_answer(deadline)
        if not self.enabled:
            PENDING_ESTIMATE.set(tokens)
            return
        if self._gate is None:
            self._gate = asyncio.Lock()
        # One request at a time waits for the budget; the others queue behind it in order. Why: with
        # hundreds in flight (adaptive concurrency) every waiter used to wake, find the budget taken and
        # sleep again, O(waiters) of client CPU per send (measured: 33 ms of CPU per call at ~250 waiting,
        # 8 ms at 50), and a loop that busy sends late and in bunches, which drew 429s.
        try:
            await asyncio.wait_for(self._gate.acquire(), timeout=max(0.0, deadline - time.monotonic()))
        except asyncio.TimeoutError:
            raise DeadlineExceeded(0.0) from None
        try:
            while True:
                now = time.monotonic()
                wait = self.delay(tokens, now)
                if wait <= 0:
                    self.requests.take(1, now)
                    self.tokens.take(tokens, now)
                    PENDING_ESTIMATE.set(tokens)
                    return
                if now + wait > deadline:
                    raise DeadlineExceeded(wait)
                await asyncio.sleep(min(wait, 1.0))
        finally:
            self._gate.release()

    async def _wait_for_first_answer(self, deadline: float) -> None:
        if not self._blind:
            return
        if self._told is None:
            self._told = asyncio.Event()
        if not self._probe_out:
            self._probe_out = True  # this request is the probe; the others wait for its answer
            return
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise DeadlineExceeded(0.0)
        try:
            await asyncio.wait_for(self._told.wait(), timeout=remaining)
        except asyncio.TimeoutError:
            raise DeadlineExceeded(remaining) from None

    def _first_answer_arrived(self) -> None:
        if self._blind:
            self._blind = False
            if self._told is not None:
                self._told.set()

    # --- what the server said ------------------------------------------------------------------
    def settle(self, estimate: float | None, prompt_tokens: int, completion_tokens: int) -> None:
        """The answer's usage is in: correct the token budget by what the estimate missed, and learn
        the completion size for the next estimates."""
        now = time.monotonic()
        if estimate is not None and self.enabled:
            self.tokens.take(prompt_tokens + completion_tokens - estimate, now)
        if self.expected_completion is None:
            self.expected_completion = float(completion_tokens)
        else:
            self.expected_completion += self.LEARNING_RATE * (completion_tokens - self.expected_completion)

    def refused(self, estimate: float | None) -> None:
        """A 429 or an error before admission: the server charged nothing for it."""
        if estimate is not None and self.enabled:
            now = time.monotonic()
            self.requests.give_back(1, now)
            self.tokens.give_back(estimate, now)

    def failed(self) -> None:
        """No answer at all (a dropped connection, a timeout): the probe is over all the same."""
        self._first_answer_arrived()

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
        self._first_answer_arrived()


class DeadlineExceeded(Exception):
    def __init__(self, wait_s: float):
        super().__init__(f"would have to wait {wait_s:.1f}s")
        self.wait_s = wait_s
