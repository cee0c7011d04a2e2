"""Adaptive concurrency (models/openai_api/adaptive.py) against the real simulator: with a request limit
that binds and a fixed latency at which 2 requests in flight reach a third of it, the adaptive client
reaches >= 90% of the limit over the steady part with <= 1% 429s, and a fixed 2 in flight stays well
below (the control: it shows the test can fail). Rates come from the simulator's own request counts,
sampled on the simulator's clock (its /_sim/log since_reset_s), never from wall-clock limits here."""

from __future__ import annotations

import asyncio
import json
import math
import threading
from datetime import datetime, timezone

import pytest

from kura_perf.corpus.types import Conversation, Message
from kura_perf.meter.api import ApiCounters, ConcurrencyStats
from kura_perf.models.openai_api import ApiSettings, OpenAISummaryModel
from kura_perf.models.openai_api.adaptive import AdaptiveConcurrency, InflightLimit
from kura_perf.models.openai_api.pacer import HeaderPacer
from kura_perf.simulator import SimulatorConfig
from kura_perf_tests.simulator_fixtures import fresh_simulator, shared_simulator

pytestmark = pytest.mark.slow

RPM = 1200  # 20 requests/s
LATENCY_MS = 300  # fixed: 2 in flight send 2 / 0.3 s = 6.7/s, a third of the limit
CONFIG = {"burst_s": 1, "seed": 3,
          "chat": {"rpm": RPM, "tpm": 50_000_000, "latency_ms": LATENCY_MS, "p99_ms": 0, "ms_per_output_token": 0}}
CHAT = "chat.completions"

sim = shared_simulator(CONFIG)
fresh = fresh_simulator(CONFIG)


def conversations(n: int) -> list[Conversation]:
    now = datetime(2024, 1, 1, tzinfo=timezone.utc)
    return [Conversation(chat_id=f"c{i}", created_at=now, messages=[
        Message("user", f"How do I read a CSV file in python? (case {i})", now),
        Message("assistant", "Use pandas.read_csv, or the csv module for plain rows.", now)]) for i in range(n)]


class SimulatorSampler:
    """Polls the simulator's request log while a run goes on: (its clock, 200s, 429s) per sample."""

    def __init__(self, sim, every_s: float = 0.2):
        self.sim, self.every_s = sim, every_s
        self.samples: list[tuple[float, int, int]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)

    def _poll(self) -> None:
        while not self._stop.is_set():
            log = self.sim.log()
            statuses = log["by_endpoint"].get(CHAT, {}).get("by_status", {})
            self.samples.append((log["since_reset_s"], statuses.get("200", 0), statuses.get("429", 0)))
            self._stop.wait(self.every_s)

    def __enter__(self) -> "SimulatorSampler":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def steady_rate(self, total: int) -> float:
        """Answers per second between 25% and 85% of the run's answers (past the opening burst, before the
        tail), on the simulator's clock."""
        inside = [(t, ok) for t, ok, _ in self.samples if 0.25 * total <= ok <= 0.85 * total]
        assert len(inside) >= 3, f"too few samples in the steady part: {self.samples}"
        (t0, ok0), (t1, ok1) = inside[0], inside[-1]
        return (ok1 - ok0) / (t1 - t0)


def run(fresh, n: int, **settings) -> tuple[float, dict, ApiCounters]:
    """Summarise n conversations; (steady share of the limit, the simulator's log, the client's counters)."""
    api = ApiSettings(base_url=fresh.base_url, api_key="sk-test", timeout_s=10, max_retries=6, seed=1, **settings)
    model = OpenAISummaryModel("gpt-4o-mini", api)
    try:
        with SimulatorSampler(fresh) as sampler:
            out = model.summarise(conversations(n), progress=lambda done, total: None)
        assert len(out) == n
        return sampler.steady_rate(n) / (RPM / 60), fresh.log(), model.counters
    finally:
        model.close()


def test_adaptive_concurrency_fills_the_binding_limit_without_429s(fresh):
    n = 240
    share, log, counters = run(fresh, n, concurrency=2, adaptive=True, max_concurrency=200)
    statuses = log["by_endpoint"][CHAT]["by_status"]
    rate_limited = statuses.get("429", 0)
    assert share >= 0.90, f"steady share of the limit {share:.2f}"
    assert rate_limited <= 0.01 * log["by_endpoint"][CHAT]["requests"]
    assert statuses["200"] == n
    # The record's figures agree: more than 2 in flight, and the request limit as the binding one.
    summary = counters.concurrency_summary()
    assert summary["adaptive"] is True and summary["inflight_max"] > 2 and summary["binding_limit"] == "requests"
    # Over the whole API span (the slow-start probe and the ramp included, ~0.8 measured): well above the control.
    assert summary["limit_share"] >= 0.6 and summary["rpm_limit"] == RPM
    assert 0 < summary["client_cpu_share"] < 1


def test_control_a_fixed_two_in_flight_stays_well_below_the_limit(fresh):
    share, log, counters = run(fresh, 40, concurrency=2, adaptive=False)
    assert share < 0.5, f"steady share of the limit {share:.2f}"
    summary = counters.concurrency_summary()
    assert summary["adaptive"] is False and summary["inflight_max"] <= 2 and summary["limit_share"] < 0.5


def answers(controller, count: int, per_s: float, start: float, latency_s: float = 0.5, tokens: int = 100) -> float:
    """`count` successful answers, `per_s` a second from `start` (a made-up clock); returns the time after."""
    for i in range(count):
        controller.answered(200, latency_s, tokens, now=start + i / per_s)
    return start + count / per_s


def test_little_s_law_sets_the_target_and_a_429_cuts_it_until_answers_bring_it_back():
    async def scenario():
        limit = InflightLimit(4)
        pacer = HeaderPacer(rpm=6000, slow_start=False)  # 100 requests/s
        controller = AdaptiveConcurrency(limit, pacer, start=4, cap=1000)
        t = answers(controller, 300, per_s=100, start=0.0)  # delivering at the limit, 0.5 s each
        full = limit.size
        controller.answered(429, 0.0, now=t)
        cut = limit.size
        controller.answered(429, 0.0, now=t + 0.1)  # within one latency of the last cut: no second cut
        again = limit.size
        answers(controller, 300, per_s=100, start=t + 0.2)
        return full, cut, again, limit.size

    full, cut, again, recovered = asyncio.run(scenario())
    assert full == 100 * 0.5 * 1.5 + 1  # Little's law x headroom, + 1
    assert cut < full and again == cut and recovered == full


def test_the_target_grows_only_as_fast_as_answers_come_back():
    """A server that cannot answer faster: the latency grows with what is sent, the target does not."""
    limit = InflightLimit(10)
    controller = AdaptiveConcurrency(limit, HeaderPacer(rpm=60_000, slow_start=False), start=10, cap=1000)
    t = answers(controller, 50, per_s=10, start=0.0, latency_s=1.0)  # 10/s delivered, 1 s each
    first = limit.size
    assert first == 2 * 10 * 1.0 * 1.5 + 1  # GAIN x delivered x latency x headroom, not 1000/s x latency
    answers(controller, 50, per_s=10, start=t, latency_s=20.0)  # still 10/s, answers 20x slower
    # Slower answers at the same rate (the box is the limit: Little's law) do not raise the bound at all:
    # the guard counts the lowest latency seen (it used to grow up to LATENCY_CAP x, without gain).
    assert limit.size == first


def test_the_target_never_passes_max_concurrency_and_shrinks_as_requests_finish():
    async def scenario():
        limit = InflightLimit(1)
        controller = AdaptiveConcurrency(limit, HeaderPacer(rpm=600_000, slow_start=False), start=1, cap=7)
        answers(controller, 1500, per_s=1000, start=0.0, latency_s=2.0, tokens=10)
        grown = limit.size
        await asyncio.wait_for(asyncio.gather(*(limit.acquire() for _ in range(grown))), 5)
        limit.resize(3)
        waiter = asyncio.ensure_future(limit.acquire())
        for _ in range(4):
            limit.release()
        await asyncio.sleep(0)
        blocked = not waiter.done()  # 3 held, size 3: the waiter waits
        limit.release()
        await asyncio.wait_for(waiter, 1)
        return grown, blocked, limit.held

    grown, blocked, held = asyncio.run(scenario())
    assert grown == 7 and blocked and held == 3


def test_merged_stats_keep_the_largest_in_flight_and_the_whole_span():
    a = ConcurrencyStats(adaptive=True, cap=1000, inflight_max=40, inflight_area_s=20.0, first_sent=10.0,
                         last_done=20.0, limit_rpm=600.0)
    b = ConcurrencyStats(inflight_max=10, inflight_area_s=5.0, first_sent=15.0, last_done=30.0)
    a.merge(b)
    assert (a.inflight_max, a.first_sent, a.last_done, a.inflight_area_s) == (40, 10.0, 30.0, 25.0)
    summary = a.summary(admitted=200, tokens=0)
    assert summary["inflight_mean"] == 1.25 and summary["limit_share"] == pytest.approx(200 / 200)


def test_the_record_and_the_run_output_carry_the_concurrency_and_say_when_the_client_cpu_bound_it():
    from types import SimpleNamespace

    from kura_perf.cli.printing import concurrency_notes
    from kura_perf.pipeline.records import with_api_concurrency

    stats = ConcurrencyStats(adaptive=True, cap=1000, inflight_max=300, inflight_area_s=2000.0, first_sent=0.0,
                             last_done=10.0, limit_rpm=30000.0, capacity_requests=500.0, loop_cpu_s=9.5,
                             loop_wall_s=10.0)
    summary = stats.summary(admitted=2500, tokens=0)
    assert summary["client_cpu_bound"] is True and summary["limit_share"] == pytest.approx(2000 / 5000)
    extra = with_api_concurrency({"model": "m"}, summary)
    assert with_api_concurrency({"model": "m"}, None) == {"model": "m"}  # a stage without API calls
    record = SimpleNamespace(stage="summaries", extra=json.dumps(extra))
    (line,) = concurrency_notes([record, SimpleNamespace(stage="clusters", extra="{}")])
    assert "300 requests in flight" in line and "40% of its RPM limit" in line and "client-CPU-bound" in line


def test_a_stage_that_fitted_the_opening_burst_says_the_limit_never_bound():
    """1,000 summaries against a 30,000 RPM limit with a 60 s burst all fit the bucket's opening capacity:
    the sustained share is 0, which the run's output printed as "0% of its RPM limit" (reads as idle).
    It now says the limit never bound, and gives the rate as a share of the RPM."""
    from types import SimpleNamespace

    from kura_perf.cli.printing import concurrency_notes
    from kura_perf.pipeline.records import with_api_concurrency

    stats = ConcurrencyStats(adaptive=True, cap=1000, inflight_max=558, inflight_area_s=5730.0, first_sent=0.0,
                             last_done=31.86, limit_rpm=30000.0, limit_tpm=150e6, capacity_requests=30000.0,
                             capacity_tokens=150e6, loop_cpu_s=22.0, loop_wall_s=31.86)
    summary = stats.summary(admitted=1000, tokens=1_500_000)
    assert summary["limit_share"] == 0 and summary["within_burst"] is True
    assert summary["rate_share"] == pytest.approx(1000 / 31.86 * 60 / 30000, abs=1e-4)
    record = SimpleNamespace(stage="summaries", extra=json.dumps(with_api_concurrency({}, summary)))
    (line,) = concurrency_notes([record])
    assert "the limit never bound" in line and "6.3% of its RPM" in line and "0% of its RPM limit" not in line
    beyond = ConcurrencyStats(inflight_max=50, first_sent=0.0, last_done=60.0, limit_rpm=600.0,
                              capacity_requests=10.0).summary(admitted=600, tokens=0)
    assert beyond["within_burst"] is False and beyond["limit_share"] == pytest.approx(590 / 600, abs=1e-4)


def test_the_probe_s_lone_answer_does_not_cut_the_bound_and_growth_starts_with_the_first_answer():
    """Measured at tier 3 (2.5-3.5 s per answer): the pacer sends one probe, then the starting bound; the
    probe's lone answer, counted with the next ones ~2 s later, read as 0.5 answers/s and cut the bound from
    50 to 6, and the bound stayed at the start for a whole round trip after the limits were known."""
    limit = InflightLimit(50)
    pacer = HeaderPacer(rpm=6000, slow_start=False)  # 100 requests/s: Little's law asks for ~450 in flight at 3 s
    controller = AdaptiveConcurrency(limit, pacer, start=50, cap=1000)
    controller.answered(200, 3.0, 100, now=10.0)  # the probe
    after_probe = limit.size
    # 2 s with no answer, then the starting 50 come back over half a second, then the grown bound's answers.
    answers(controller, 50, per_s=100, start=12.0, latency_s=3.0)
    after_first_round = limit.size
    answers(controller, 300, per_s=100, start=12.5, latency_s=3.0)
    # The first answer: 50 in flight at 3 s deliver ~16.7/s; growth by GAIN from there, not a wait at 50.
    assert after_probe == math.ceil(2 * 50 / 3.0 * 3.0 * 1.5 + 1) > 50
    assert after_first_round >= after_probe  # never cut by the window that spanned the idle gap
    assert limit.size == 100 * 3.0 * 1.5 + 1  # at the limit once a full second of answers is counted


QUANTIZED = {"burst_s": 1, "seed": 5,
             "chat": {"rpm": 2400, "tpm": 50_000_000, "latency_ms": 300, "p99_ms": 0, "ms_per_output_token": 0}}
quantized = shared_simulator(QUANTIZED)


def test_over_the_whole_stage_adaptive_concurrency_runs_at_90_percent_of_a_quantized_limit(quantized):
    """A limit enforced per second (as OpenAI says its limits may be), 40 requests/s, a start (4 in flight at
    0.3 s: 13/s) a third of it. The share counts the whole stage on the simulator's clock, from before its
    first request to after its last answer, ramp and tail included, less the bucket's opening burst."""
    quantized.configure(**{k: v for k, v in SimulatorConfig.from_dict(QUANTIZED).to_dict().items()
                           if k not in ("host", "port")})
    quantized.reset()
    n, rate = 1000, QUANTIZED["chat"]["rpm"] / 60
    api = ApiSettings(base_url=quantized.base_url, api_key="sk-test", timeout_s=10, max_retries=6, seed=1,
                      concurrency=4, adaptive=True, max_concurrency=400)
    model = OpenAISummaryModel("gpt-4o-mini", api)
    try:
        with SimulatorSampler(quantized, every_s=0.1) as sampler:
            out = model.summarise(conversations(n), progress=lambda done, total: None)
        assert len(out) == n
    finally:
        model.close()
    log = quantized.log()["by_endpoint"][CHAT]
    statuses = log["by_status"]
    # The simulator records a request when it admits it; its answer follows after the fixed latency.
    before_first = max(t for t, ok, refused in sampler.samples if ok + refused == 0)
    after_last = min(t for t, ok, _ in sampler.samples if ok == n) + QUANTIZED["chat"]["latency_ms"] / 1000
    opening_burst = QUANTIZED["chat"]["rpm"] * QUANTIZED["burst_s"] / 60
    share = (statuses["200"] - opening_burst) / ((after_last - before_first) * rate)
    assert share >= 0.90, f"whole-stage share of the limit {share:.3f}"
    assert statuses.get("429", 0) <= 0.01 * log["requests"]
    summary = model.counters.concurrency_summary()
    assert summary["binding_limit"] == "requests" and summary["limit_share"] >= 0.90


@pytest.mark.parametrize("admitted, cpu_s, inflight_area_s, expected", [
    (2500, 9.5, 2000.0, "the client's CPU"),  # 40% of the limit, the client's loop 95% busy
    (4800, 9.5, 2000.0, "the RPM limit"),  # 86% of the limit: the limit bound, however busy the client
    (2500, 2.0, 9500.0, "the in-flight ceiling"),  # 950 of 1000 in flight on average
    (2500, 2.0, 2000.0, "latency"),  # none of those: the answers' time at what was kept in flight
    (400, 2.0, 100.0, "not the limit (every request fitted its opening burst): latency"),  # a 60 s burst
])
def test_the_record_says_what_bound_the_stage(admitted, cpu_s, inflight_area_s, expected):
    stats = ConcurrencyStats(adaptive=True, cap=1000, inflight_max=1000, inflight_area_s=inflight_area_s,
                             first_sent=0.0, last_done=10.0, limit_rpm=30000.0, capacity_requests=500.0,
                             loop_cpu_s=cpu_s, loop_wall_s=10.0)
    summary = stats.summary(admitted=admitted, tokens=0)
    assert summary["bound_by"].startswith(expected)
    from types import SimpleNamespace

    from kura_perf.cli.printing import concurrency_notes
    (line,) = concurrency_notes([SimpleNamespace(stage="summaries", extra=json.dumps({"api_concurrency": summary}))])
    assert f"bound by {expected}" in line
