"""The simulator's rate-limit buckets (simulator/limits.py) on a made-up clock: what a quantized limit
(a short burst window, as OpenAI says its limits may be enforced) lets through, and what a full-minute
window lets through, so that a profile's limit binds when the profile says it does."""

from __future__ import annotations

import bisect

import pytest

from kura_perf.profiles import get_profile
from kura_perf.simulator.config import EndpointConfig
from kura_perf.simulator.limits import ModelLimits

STEP_S = 0.001  # the greedy client asks again every millisecond, as many times as it is let in


def greedy_admissions(rpm: int, burst_s: float, seconds: float, tokens: int = 1) -> list[float]:
    """Times at which a client that asks as often as it can is admitted (no tokens limit binds)."""
    limits = ModelLimits(EndpointConfig(rpm=rpm, tpm=10**12), burst_s, now=0.0)
    admitted = []
    for i in range(int(seconds / STEP_S)):
        now = i * STEP_S
        while limits.admit(tokens, now).admitted:  # as many as it lets in at this instant
            admitted.append(now)
    return admitted


def most_in_any_window(times: list[float], window_s: float) -> int:
    """The most admissions inside any window [t, t + window_s) that starts at an admission."""
    return max(bisect.bisect_left(times, t + window_s) - i for i, t in enumerate(times))


@pytest.mark.parametrize("window_s", [0.5, 1.0, 2.0, 10.0])
def test_a_quantized_bucket_admits_no_more_than_its_window_plus_the_refill(window_s):
    rpm, burst_s = 6000, 1.0  # 100 a second, enforced over one second
    times = greedy_admissions(rpm, burst_s, seconds=30.0)
    most = most_in_any_window(times, window_s)
    # A token bucket: what it holds (one window's worth, rpm x burst_s / 60) plus what refills meanwhile.
    assert most <= rpm * (burst_s + window_s) / 60 + 1
    # After the opening burst, any window holds no more than the limit's own rate (+1 for the edge).
    after = [t for t in times if t >= burst_s + window_s]
    assert most_in_any_window(after, window_s) <= rpm * window_s / 60 + 1


def test_over_a_long_run_the_quantized_bucket_lets_through_the_limit_and_no_more():
    rpm, burst_s, seconds = 6000, 1.0, 30.0
    times = greedy_admissions(rpm, burst_s, seconds)
    allowed = rpm * seconds / 60 + rpm * burst_s / 60  # the rate over the run plus the opening bucket
    assert 0.99 * allowed <= len(times) <= allowed + 1


def test_a_full_minute_window_lets_a_minute_of_requests_through_at_once_a_quantized_one_does_not():
    """Why reference-tier3 is quantized: with burst_s = 60 the first second admits the whole minute."""
    rpm = 6000
    assert len(greedy_admissions(rpm, 60.0, seconds=1.0)) >= rpm
    assert len(greedy_admissions(rpm, 1.0, seconds=1.0)) <= 2 * rpm / 60 + 1


def test_reference_tier3_is_quantized_at_the_published_tier_3_limits():
    sim = get_profile("reference-tier3").api.simulator
    assert sim["burst_s"] <= 5
    assert sim["chat"] == {"rpm": 5000, "tpm": 4_000_000}
    assert sim["embeddings"] == {"rpm": 5000, "tpm": 5_000_000}
