"""API-backed models (real openai client) against the simulator subprocess: round trips, counting,
retries, pacing, failure and key hygiene."""

from __future__ import annotations

import logging
import math
import threading
from datetime import datetime, timezone

import numpy as np
import pytest

from kura_perf.corpus.types import Conversation, Message
from kura_perf.errors import StageError
from kura_perf.models.openai_api import (
    ApiSettings,
    OpenAIClusterNamer,
    OpenAIEmbedding,
    OpenAISummaryModel,
    parse_reset,
    price_for,
    retry_after_s,
)
from kura_perf.models.protocols import SUMMARY_FIELDS, ClusterNamer, EmbeddingModel, SummaryModel
from kura_perf.simulator import SimulatorProcess
from kura_perf_tests.simulator_fixtures import fresh_simulator, shared_simulator

pytestmark = pytest.mark.slow

SECRET = "sk-test-DO-NOT-LEAK-7f3a9c"
FAST = {"latency_ms": 2, "p99_ms": 8, "chat_ms_per_output_token": 0, "seed": 11}
TOPICS = [
    "How do I fix a KeyError when reading a pandas dataframe column in python?",
    "Can you suggest a weekly vegetarian meal plan with high protein recipes?",
    "My kubernetes pod keeps restarting with CrashLoopBackOff, how do I debug it?",
    "Write a polite email to my landlord about a broken heating radiator.",
    "Explain how compound interest works for a retirement savings account.",
]


sim = shared_simulator(FAST)
fresh = fresh_simulator(FAST)


def settings(sim, **overrides) -> ApiSettings:
    values = dict(base_url=sim.base_url, api_key=SECRET, timeout_s=5.0, max_retries=8, concurrency=8,
                  backoff_base_s=0.01, backoff_max_s=0.2, seed=1)
    return ApiSettings(**(values | overrides))


def conversations(n: int) -> list[Conversation]:
    now = datetime(2024, 1, 1, tzinfo=timezone.utc)
    return [
        Conversation(chat_id=f"c{i}", created_at=now, messages=[
            Message("user", f"{TOPICS[i % len(TOPICS)]} (case {i})", now),
            Message("assistant", "Here is how to approach it, step by step.", now),
        ])
        for i in range(n)
    ]


def endpoint(log: dict, name: str) -> dict:
    stats = log["by_endpoint"].get(name, {"requests": 0, "by_status": {}, "prompt_tokens": 0, "completion_tokens": 0})
    by_status = stats["by_status"]
    return {
        "calls": stats["requests"],
        "errors": sum(n for status, n in by_status.items() if status != "200"),
        "rate_limited": by_status.get("429", 0),
        "tokens_in": stats["prompt_tokens"],
        "tokens_out": stats["completion_tokens"],
    }


def counted(model) -> dict:
    c = model.counters
    return {"calls": c.calls, "errors": c.errors, "rate_limited": c.rate_limited,
            "tokens_in": c.tokens_in, "tokens_out": c.tokens_out}


# --- round trips --------------------------------------------------------------------------------
def test_summaries_follow_kuras_schema_and_vary_with_input(fresh):
    with OpenAISummaryModel("gpt-4o-mini", settings(fresh)) as model:
        assert isinstance(model, SummaryModel)
        summaries = model.summarise(conversations(10))
    assert len(summaries) == 10
    for summary in summaries:
        assert tuple(summary) == SUMMARY_FIELDS
        assert 1 <= summary["concerning_score"] <= 5 and 1 <= summary["user_frustration"] <= 5
        assert isinstance(summary["languages"], list) and isinstance(summary["assistant_errors"], list)
    assert "pandas" in summaries[0]["summary"].lower() and "kubernetes" in summaries[2]["summary"].lower()
    # one request per input: the 10 inputs are 5 topics x "(case i)" at the end, which a 20-word request
    # (what Kura's prompt asks for, simulator/text.py ANSWER_WORDS) leaves out, as a real model would;
    # so per topic here, and per case when the case comes first
    assert len({s["request"] for s in summaries}) == len(TOPICS)
    with OpenAISummaryModel("gpt-4o-mini", settings(fresh)) as model:
        cases_first = model.summarise([Conversation(chat_id=c.chat_id, created_at=c.created_at, messages=[
            Message("user", f"Case {i}: {c.messages[0].content}", c.created_at), *c.messages[1:]])
            for i, c in enumerate(conversations(10))])
    assert len({s["request"] for s in cases_first}) == 10


def test_cluster_names_come_from_member_texts(fresh):
    groups = [["The user debugs a kubernetes pod crash", "kubernetes deployment keeps failing"],
              ["The user wants a vegetarian recipe", "vegetarian dinner recipe ideas"]]
    with OpenAIClusterNamer("gpt-4o-mini", settings(fresh)) as namer:
        assert isinstance(namer, ClusterNamer)
        names = namer.name_clusters(groups)
    assert "kubernetes" in names[0][0].lower() and "vegetarian" in names[1][0].lower()
    assert all(name and description for name, description in names)


@pytest.mark.parametrize("model, dimension, expected", [
    ("text-embedding-3-small", None, 1536), ("text-embedding-3-large", None, 3072),
    ("text-embedding-3-small", 256, 256),
])
def test_embedding_shapes(fresh, model, dimension, expected):
    with OpenAIEmbedding(model, dimension, settings=settings(fresh), batch_size=4) as embedder:
        assert isinstance(embedder, EmbeddingModel) and embedder.dimension == expected
        vectors = embedder.embed(["a", "b", "", "c", "d", "e"])
        assert vectors.shape == (6, expected) and vectors.dtype == np.float32
        assert embedder.counters.calls == 2  # ceil(6 / 4) batches


def test_embeddings_are_deterministic_and_keep_similarity(fresh):
    texts = ["reset my router password", "how do I reset the router password", "banana bread recipe"]
    with OpenAIEmbedding("text-embedding-3-small", settings=settings(fresh), batch_size=1) as embedder:
        first, second = embedder.embed(texts), embedder.embed(texts)
    assert np.array_equal(first, second)
    assert first[0] @ first[1] > first[0] @ first[2]


# --- counting against the simulator's log -------------------------------------------------------
def test_counters_equal_the_simulator_log_under_rate_limiting(fresh):
    fresh.configure(chat={"rpm": 600}, embeddings={"rpm": 600}, burst_s=0.2)  # buckets of 2, +10/s
    unpaced = settings(fresh, pace_from_headers=False, backoff_base_s=0.05, max_retries=12)
    with OpenAISummaryModel("gpt-4o-mini", unpaced) as summariser, \
            OpenAIEmbedding("text-embedding-3-small", settings=unpaced, batch_size=1) as embedder:
        summariser.summarise(conversations(6))
        embedder.embed([f"text {i}" for i in range(6)])
    log = fresh.log()
    assert counted(summariser) == endpoint(log, "chat.completions")
    assert counted(embedder) == endpoint(log, "embeddings")
    assert summariser.counters.rate_limited > 0  # the limit was actually hit
    assert summariser.counters.retries == summariser.counters.errors
    assert math.isclose(summariser.counters.cost_usd,
                        (summariser.counters.tokens_in * 0.15 + summariser.counters.tokens_out * 0.60) / 1e6)
    assert len(summariser.counters.latencies_s) == summariser.counters.calls - summariser.counters.errors


def test_pacing_from_headers_stays_under_the_limit(fresh):
    fresh.configure(embeddings={"rpm": 600}, burst_s=0.5)  # 10 requests/s, bucket of 5
    with OpenAIEmbedding("text-embedding-3-small", settings=settings(fresh, concurrency=10), batch_size=1) as e:
        e.embed(["warm up"])  # the first answer tells the client the limit
        e.embed([f"text {i}" for i in range(20)])
    assert e.counters.calls == 21
    assert e.counters.rate_limited <= 1  # pacing, not 429s, keeps the rate


@pytest.mark.parametrize("share", [0.1, 0.4])
def test_injected_429s_are_retried_to_completion(fresh, share):
    fresh.configure(rate_limit_rate=share, forced_retry_after_s=0.01)
    with OpenAISummaryModel("gpt-4o-mini", settings(fresh, max_retries=15)) as model:
        assert len(model.summarise(conversations(20))) == 20
    log = fresh.log()
    assert counted(model) == endpoint(log, "chat.completions")
    assert model.counters.rate_limited == log["faults"]["forced_rate_limit"] > 0


def test_faults_and_an_outage_are_survived_and_every_fault_counted(fresh):
    patient = settings(fresh, max_retries=20, backoff_max_s=0.3)  # enough to outlast the outage
    with OpenAISummaryModel("gpt-4o-mini", patient) as model:
        model.summarise(conversations(1))  # warm up, so the outage below falls on the batch
        model.reset_counters()
        fresh.reset()
        fresh.configure(error_rate=0.1, drop_rate=0.1)
        fresh.outage(duration_s=1.0)
        summaries = model.summarise(conversations(50))
    assert len(summaries) == 50
    log = fresh.log()
    assert counted(model) == endpoint(log, "chat.completions")
    faults = log["faults"]
    assert faults["outage"] > 0 and faults["dropped"] > 0 and faults["server_error"] > 0
    assert model.counters.errors == faults["outage"] + faults["dropped"] + faults["server_error"]
    assert model.counters.retries == model.counters.errors


# --- failing clearly ----------------------------------------------------------------------------
def test_fault_rate_beyond_the_budget_fails_with_a_clear_stage_error(fresh):
    fresh.configure(error_rate=1.0)
    with OpenAISummaryModel("gpt-4o-mini", settings(fresh, max_retries=2)) as model:
        with pytest.raises(StageError) as raised:
            model.summarise(conversations(3))
    message = str(raised.value)
    assert "openai:gpt-4o-mini" in message and "after 3 attempts" in message and "max_retries=2" in message
    assert "HTTP 50" in message
    assert fresh.log()["by_endpoint"]["chat.completions"]["requests"] == model.counters.calls


def test_dropped_connections_beyond_the_budget_name_the_cause(fresh):
    fresh.configure(drop_rate=1.0)
    with OpenAIEmbedding("text-embedding-3-small", settings=settings(fresh, max_retries=1)) as embedder:
        with pytest.raises(StageError, match=r"after 2 attempts.*connection error"):
            embedder.embed(["x"])
    assert embedder.counters.calls == embedder.counters.errors == 2


def test_client_timeouts_are_counted(fresh):
    fresh.configure(timeout_rate=1.0, slow_response_s=1.0)
    with OpenAIEmbedding("text-embedding-3-small", settings=settings(fresh, timeout_s=0.2, max_retries=1)) as e:
        with pytest.raises(StageError, match="timeout"):
            e.embed(["x"])
    assert e.counters.timeouts == e.counters.errors == 2 == fresh.log()["faults"]["timeout"]


def test_non_retryable_errors_fail_at_once(fresh):
    with OpenAIEmbedding("text-embedding-3-small", 4096, settings=settings(fresh)) as embedder:  # above 1536
        with pytest.raises(StageError, match="HTTP 400.*not retryable"):
            embedder.embed(["x"])
    assert embedder.counters.calls == 1 and embedder.counters.retries == 0


# --- lifecycle, prices, headers, key hygiene ----------------------------------------------------
def test_close_stops_the_private_loop_and_is_idempotent(fresh):
    model = OpenAIEmbedding("text-embedding-3-small", settings=settings(fresh))
    model.embed(["x"])
    assert any(t.name == f"kura-perf-{model.name}" for t in threading.enumerate())
    model.close()
    model.close()
    assert not any(t.name == f"kura-perf-{model.name}" for t in threading.enumerate())


def test_prices_and_header_parsing():
    assert price_for("gpt-4o-mini-2024-07-18") == (0.15, 0.60)
    assert price_for("gpt-4o") == (2.50, 10.00)
    assert price_for("text-embedding-3-large") == (0.13, 0.0)
    assert price_for("unknown-model") is None  # unknown: the cost is unknown, never a silent $0
    assert price_for("gpt-4o", {"gpt-4o": (1.0, 2.0)}) == (1.0, 2.0)
    assert price_for("anthropic/claude-3-haiku") == (0.25, 1.25)  # the proposal's provider/model names
    assert price_for("claude-3-haiku-20240307") == (0.25, 1.25)
    assert price_for("gpt-4.1-mini-2025-04-14") == (0.40, 1.60)  # the longest known prefix wins
    assert price_for("my-llm", {"my-llm": (1.0, 3.0)}) == (1.0, 3.0)
    assert parse_reset("6m0s") == 360 and parse_reset("250ms") == 0.25 and parse_reset("1.5s") == 1.5
    assert retry_after_s({"retry-after-ms": "150", "retry-after": "1"}) == 0.15
    assert retry_after_s({"retry-after": "2"}) == 2.0


def test_the_key_never_appears_in_reprs_logs_or_the_simulator(caplog, capsys):
    caplog.set_level(logging.DEBUG)
    with SimulatorProcess({**FAST, "verbose": True, "error_rate": 0.3}) as chatty:
        api = settings(chatty)
        with OpenAISummaryModel("gpt-4o-mini", api) as model, \
                OpenAIEmbedding("text-embedding-3-small", settings=api) as embedder:
            model.summarise(conversations(3))
            embedder.embed(["x"])
            surfaces = [repr(api), str(api), str(api.redacted()), repr(model), str(model), repr(embedder),
                        str(model.counters.as_dict()), str(chatty.log())]
    surfaces += [chatty.output, caplog.text, *capsys.readouterr()]
    assert "status=200" in chatty.output  # the verbose simulator did log the requests
    for text in surfaces:
        assert SECRET not in text


def test_pacer_waits_when_the_reported_budget_is_spent():
    import httpx

    from kura_perf.models.openai_api import HeaderPacer

    pacer = HeaderPacer()
    assert pacer.delay(1, now=0.0) == 0.0  # nothing known yet: no pacing
    spent = httpx.Headers({"x-ratelimit-limit-requests": "600", "x-ratelimit-remaining-requests": "0",
                           "x-ratelimit-reset-requests": "1s"})
    pacer.observe(200, spent)
    now = pacer.requests.updated
    # one request plus one of headroom, refilled at 99% of 600/min
    assert pacer.delay(1, now) == pytest.approx(2 / (0.99 * 10), rel=0.02)
    assert pacer.requests.capacity == 10  # remaining 0 + 1 s * 10/s: the bucket holds 10
    assert pacer.requests.wait_for(1, now + 3600) == 0 and pacer.requests.level == 10  # capped after idling
