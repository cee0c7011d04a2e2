"""The client-side pacer and the price table, without a server: slow start, estimates settled by
usage, 429s handing their tokens back, and costs that are unknown rather than $0."""

from __future__ import annotations

import asyncio
import time

import httpx
import pytest

from kura_perf.experiments.sweep import limit_share
from kura_perf.meter.api import ApiCounters
from kura_perf.models.openai_api.http import HttpMeter
from kura_perf.models.openai_api.pacer import PENDING_ESTIMATE, HeaderPacer


def _headers(limit_tokens=6000, remaining_tokens=6000, reset="0s", limit_requests=600, remaining_requests=600):
    return httpx.Headers({
        "x-ratelimit-limit-tokens": str(limit_tokens), "x-ratelimit-remaining-tokens": str(remaining_tokens),
        "x-ratelimit-reset-tokens": reset, "x-ratelimit-limit-requests": str(limit_requests),
        "x-ratelimit-remaining-requests": str(remaining_requests), "x-ratelimit-reset-requests": "0s",
    })


def test_until_the_first_answer_only_one_request_is_in_flight():
    async def scenario():
        pacer = HeaderPacer()
        deadline = time.monotonic() + 60
        await pacer.acquire(10, deadline)  # the probe goes at once
        waiter = asyncio.ensure_future(pacer.acquire(10, deadline))
        await asyncio.sleep(0.05)
        blocked = not waiter.done()
        pacer.observe(200, _headers())  # the probe's answer tells the limits
        await asyncio.wait_for(waiter, 5)
        return blocked

    assert asyncio.run(scenario()) is True


def test_hints_skip_the_slow_start():
    async def scenario():
        pacer = HeaderPacer(rpm=600)
        deadline = time.monotonic() + 60
        await pacer.acquire(1, deadline)
        await asyncio.wait_for(pacer.acquire(1, deadline), 1)  # no probe to wait for
        return True

    assert asyncio.run(scenario())


def test_the_estimate_learns_the_completion_size_and_usage_settles_the_budget():
    pacer = HeaderPacer(slow_start=False)
    assert pacer.estimate(100, max_completion_tokens=512) == 612  # before any answer: the limit (safe side)
    pacer.observe(200, _headers(limit_tokens=6000, remaining_tokens=6000))
    level = pacer.tokens.level
    pacer.tokens.take(612, pacer.tokens.updated)
    pacer.settle(612, prompt_tokens=100, completion_tokens=150)  # the server charged 250
    assert pacer.expected_completion == 150
    assert pacer.tokens.level == pytest.approx(level - 250, abs=1.0)  # charged, not estimated (+ refill)
    assert pacer.estimate(100, max_completion_tokens=512) == 250
    pacer.settle(250, prompt_tokens=100, completion_tokens=250)
    assert 150 < pacer.expected_completion < 250  # a moving average, not the last answer


def test_a_429_hands_its_estimate_back_then_the_headers_cap_the_budget():
    pacer = HeaderPacer(slow_start=False)
    meter = HttpMeter("gpt-4o-mini", None, pacer)
    pacer.observe(200, _headers(limit_tokens=6000, remaining_tokens=3000, reset="30s"))
    now = pacer.tokens.updated
    pacer.tokens.take(1000, now)
    before = pacer.tokens.level
    token = PENDING_ESTIMATE.set(1000.0)
    try:
        meter.answered(429, _headers(limit_tokens=6000, remaining_tokens=2500, reset="35s"), b"", 0.01)
    finally:
        PENDING_ESTIMATE.reset(token)
    assert meter.counters.rate_limited == 1 and meter.counters.errors == 1
    assert before < pacer.tokens.level <= 2500 + 1  # handed back, but never above what the server said


def test_unknown_price_makes_the_cost_unknown_with_a_warning_naming_the_model():
    pacer = HeaderPacer(slow_start=False)
    meter = HttpMeter("my-local-llm", None, pacer)
    body = b'{"usage": {"prompt_tokens": 10, "completion_tokens": 5}}'
    meter.answered(200, httpx.Headers({"content-type": "application/json"}), body, 0.01)
    data = meter.counters.as_dict()
    assert data["tokens_in"] == 10 and data["tokens_out"] == 5
    assert data["cost_usd"] is None
    assert "my-local-llm" in data["warnings"][0] and "api.prices" in data["warnings"][0]
    priced = HttpMeter("my-local-llm", {"my-local-llm": (1.0, 2.0)}, HeaderPacer(slow_start=False))
    priced.answered(200, httpx.Headers({"content-type": "application/json"}), body, 0.01)
    assert priced.counters.as_dict()["cost_usd"] == pytest.approx((10 * 1.0 + 5 * 2.0) / 1e6)


def test_merged_counters_keep_the_cost_unknown():
    a, b = ApiCounters(cost_usd=0.5), ApiCounters()
    b.note_unpriced("x", "no price for x")
    a.merge(b)
    assert a.total_cost_usd is None and a.warnings == ["no price for x"]


def test_limit_share_takes_the_opening_burst_off():
    # 600/min for 60 s allows 600; a bucket that held 50 at the start: 650 charged is 100%.
    assert limit_share(650, 50, 60.0, 600) == pytest.approx(1.0)
    assert limit_share(300, 0, 60.0, 600) == pytest.approx(0.5)
    assert limit_share(10, 50, 60.0, 600) == 0.0
    assert limit_share(10, 0, 60.0, None) is None


def test_profile_price_overrides_are_validated():
    from kura_perf.profiles.schema import ApiConfig

    assert ApiConfig(prices={"my-llm": [1.0, 2.0]}).prices == {"my-llm": (1.0, 2.0)}
    with pytest.raises(ValueError, match="must be >= 0"):
        ApiConfig(prices={"my-llm": [-1.0, 2.0]})


def test_waiters_queue_for_the_budget_instead_of_all_polling_it():
    """With many requests waiting (adaptive concurrency keeps hundreds), each send costs O(1) budget checks:
    one waiter polls at a time, the rest queue in order. Before, every waiter woke and re-checked on every
    refill, O(waiters) per send: client CPU that grew with what was in flight."""
    async def scenario(n: int) -> int:
        pacer = HeaderPacer(rpm=60_000, slow_start=False)  # 1000 requests/s: n sends take ~n ms
        pacer.observe(200, _headers(limit_tokens=10**9, remaining_tokens=10**9, limit_requests=60_000,
                                    remaining_requests=0))
        checks = 0
        delay = pacer.delay

        def counted(tokens, now):
            nonlocal checks
            checks += 1
            return delay(tokens, now)

        pacer.delay = counted
        deadline = time.monotonic() + 60
        await asyncio.wait_for(asyncio.gather(*(pacer.acquire(1, deadline) for _ in range(n))), 30)
        return checks

    n = 60
    assert asyncio.run(scenario(n)) <= 4 * n
