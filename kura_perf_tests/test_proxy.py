"""The recording proxy (kura_perf/proxy/): any client's requests, forwarded unchanged to the simulator as the
upstream, come back unchanged, and are logged one line each in the request-log format `kura-perf calibrate`
fits, which then recovers the simulator's configured latency."""

import asyncio
import gzip
import json
import os
import threading

import httpx
import pytest

from kura_perf.cli.main import main
from kura_perf.experiments.calibrate import calibrate_file
from kura_perf.meter.request_log import read_log
from kura_perf.models.openai_api import ApiSettings, OpenAIEmbedding, OpenAISummaryModel
from kura_perf.proxy.process import ProxyProcess
from kura_perf_tests.simulator_fixtures import fresh_simulator, pid_gone, shared_simulator
from kura_perf_tests.test_calibrate import conversations, texts

pytestmark = pytest.mark.slow

SECRET = "sk-test-proxy-NEVER-LOGGED"
CHAT = {"latency_ms": 150.0, "p99_ms": 300.0, "ms_per_output_token": 1.0}
EMB = {"latency_ms": 80.0, "p99_ms": 160.0, "ms_per_input_token": 0.2}
CONFIG = {"chat": {**CHAT, "rpm": None, "tpm": None}, "embeddings": {**EMB, "rpm": None, "tpm": None}, "seed": 7}

sim = shared_simulator(CONFIG)
fresh = fresh_simulator(CONFIG)


@pytest.fixture
def proxied(fresh, tmp_path):
    """A proxy in front of the fresh simulator, its log in tmp_path; always stopped, and gone after."""
    log = tmp_path / "proxy.jsonl"
    proxy = ProxyProcess(fresh.base_url, str(log)).start()
    pid = proxy.pid
    try:
        yield proxy, log
    finally:
        proxy.stop()
        assert pid_gone(pid), "the proxy process outlived its fixture"


def _post(client: httpx.Client, base: str, path: str, body: dict) -> httpx.Response:
    return client.post(f"{base}/{path}", json=body, headers={"Authorization": f"Bearer {SECRET}"})


def test_answers_come_back_unchanged_and_each_request_is_one_line(fresh, proxied):
    """Chat and embeddings through the proxy: the same answers as straight from the simulator (but for a
    chat answer's random id and clock), one log line each whose tokens are the simulator's usage, no key,
    no content."""
    proxy, log = proxied
    chat = {"model": "gpt-4o-mini", "max_tokens": 20,
            "messages": [{"role": "user", "content": "summarise the router password reset"}]}
    emb = {"model": "text-embedding-3-small", "input": ["banana bread", "kubernetes pods"]}
    with httpx.Client(trust_env=False, timeout=30) as client:
        direct = [_post(client, fresh.base_url, "chat/completions", chat), _post(client, fresh.base_url, "embeddings", emb)]
        fresh.reset()
        through = [_post(client, proxy.base_url, "chat/completions", chat), _post(client, proxy.base_url, "embeddings", emb)]
        models = client.get(f"{proxy.base_url}/models")
    assert [r.status_code for r in direct + through] == [200] * 4 and models.status_code == 200
    assert through[1].content == direct[1].content  # embeddings: byte for byte
    a, b = direct[0].json(), through[0].json()
    assert {k: v for k, v in a.items() if k not in ("id", "created")} == \
        {k: v for k, v in b.items() if k not in ("id", "created")}
    for one, other in zip(direct, through):  # the endpoint's own headers are passed back
        mine = {k: v for k, v in one.headers.items() if k.startswith("x-") or k == "content-type"}
        assert mine and {k: other.headers.get(k) for k in mine} == mine

    text = log.read_text()
    assert SECRET not in text and "router" not in text and "banana" not in text
    entries = read_log(log)
    assert [(e.endpoint, e.model, e.status) for e in entries] == [
        ("chat", "gpt-4o-mini", 200), ("embeddings", "text-embedding-3-small", 200), ("models", "unknown", 200)]
    for entry, answer in zip(entries, through):
        usage = answer.json()["usage"]
        assert entry.prompt_tokens == usage["prompt_tokens"] and entry.prompt_tokens > 0
        assert entry.completion_tokens == usage.get("completion_tokens")
        assert entry.latency_s > 0
    assert entries[1].kind == "embeddings" and entries[0].kind is None
    served = fresh.log()["by_endpoint"]
    assert served["chat.completions"]["by_status"] == {"200": 1} and served["embeddings"]["by_status"] == {"200": 1}


def test_429s_are_passed_back_and_logged_as_the_simulator_counted(fresh, proxied):
    proxy, log = proxied
    fresh.configure(faults={"rate_limit_rate": 0.4, "forced_retry_after_s": 0.01})
    chat = {"model": "gpt-4o-mini", "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}]}
    with httpx.Client(trust_env=False, timeout=30) as client:
        answers = [_post(client, proxy.base_url, "chat/completions", chat) for _ in range(30)]
    statuses = [r.status_code for r in answers]
    assert 429 in statuses and 200 in statuses
    assert all("retry-after" in r.headers for r in answers if r.status_code == 429)
    entries = read_log(log)
    assert [e.status for e in entries] == statuses
    served = fresh.log()["by_endpoint"]["chat.completions"]["by_status"]
    assert sum(1 for e in entries if e.status == 429) == served["429"]
    assert all(e.completion_tokens is None for e in entries if e.status == 429)
    assert sum(e.completion_tokens for e in entries if e.status == 200) == \
        sum(r.json()["usage"]["completion_tokens"] for r in answers if r.status_code == 200)


def test_an_unreachable_upstream_is_a_502_and_a_connection_error_line(tmp_path):
    import socket

    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    log = tmp_path / "proxy.jsonl"
    with ProxyProcess(f"http://127.0.0.1:{port}/v1", str(log)) as proxy, \
            httpx.Client(trust_env=False, timeout=30) as client:
        answer = _post(client, proxy.base_url, "embeddings", {"model": "m", "input": "x"})
    assert answer.status_code == 502
    [entry] = read_log(log)
    assert (entry.status, entry.model, entry.endpoint) == ("connection_error", "m", "embeddings")


def test_headers_and_compressed_answers_pass_through(tmp_path):
    """Authorization reaches the upstream (and never the log); a gzip answer comes back still gzipped,
    byte for byte, and its usage is read all the same."""
    from aiohttp import web

    seen = {}
    payload = gzip.compress(json.dumps({"object": "list", "usage": {"prompt_tokens": 7, "total_tokens": 7}}).encode())

    async def handler(request):
        seen["auth"] = request.headers.get("Authorization")
        seen["body"] = await request.read()
        seen["path"] = request.path_qs
        return web.Response(body=payload, headers={"Content-Type": "application/json", "Content-Encoding": "gzip"})

    ready = threading.Event()
    state = {}

    def serve():
        loop = asyncio.new_event_loop()
        state["loop"] = loop
        app = web.Application()
        app.router.add_post("/base/v1/embeddings", handler)
        runner = web.AppRunner(app)
        loop.run_until_complete(runner.setup())
        site = web.TCPSite(runner, "127.0.0.1", 0)
        loop.run_until_complete(site.start())
        state["port"] = runner.addresses[0][1]
        state["runner"] = runner
        ready.set()
        loop.run_forever()
        loop.run_until_complete(runner.cleanup())

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        assert ready.wait(30)
        log = tmp_path / "proxy.jsonl"
        body = json.dumps({"model": "text-embedding-3-small", "input": "secret text"}).encode()
        with ProxyProcess(f"http://127.0.0.1:{state['port']}/base/v1/", str(log)) as proxy, \
                httpx.Client(trust_env=False, timeout=30) as client:
            with client.stream("POST", f"{proxy.base_url}/embeddings?x=1", content=body,
                               headers={"Authorization": f"Bearer {SECRET}", "Content-Type": "application/json",
                                        "Accept-Encoding": "gzip"}) as answer:
                raw = b"".join(answer.iter_raw())
    finally:
        if "loop" in state:
            state["loop"].call_soon_threadsafe(state["loop"].stop)
        thread.join(timeout=30)
    assert seen == {"auth": f"Bearer {SECRET}", "body": body, "path": "/base/v1/embeddings?x=1"}
    assert answer.headers["content-encoding"] == "gzip" and raw == payload
    [entry] = read_log(log)
    assert entry.prompt_tokens == 7 and SECRET not in log.read_text() and "secret text" not in log.read_text()


def test_calibrate_on_the_proxys_log_recovers_the_simulators_median(fresh, proxied, tmp_path, capsys):
    """A client that keeps no log of its own (our client with api_log=None stands in for Kura's) goes
    through the proxy; `kura-perf calibrate` on the proxy's log gives back the configured medians and
    per-token times within 4 standard errors of the fit (plus, for the base time, what the proxy and a
    loaded box add to every request: they only add)."""
    proxy, log = proxied
    settings = ApiSettings(base_url=proxy.base_url, api_key=SECRET, timeout_s=10.0, max_retries=8, concurrency=30,
                           backoff_base_s=0.01, backoff_max_s=0.05, seed=1, api_log=None)
    with OpenAISummaryModel("gpt-4o-mini", settings) as summariser:
        summariser.summarise(conversations(200))
    with OpenAIEmbedding("text-embedding-3-small", settings=settings, batch_size=3) as embedder:
        embedder.embed(texts(300))
    out = tmp_path / "fitted.toml"
    assert main(["calibrate", str(log), "--profile-name", "fitted", "--out", str(out)]) == 0
    assert "(n=200)" in capsys.readouterr().out
    fits = {f.endpoint: f for f in calibrate_file(log)}
    assert fits["chat"].fitted == 200 and fits["embeddings"].fitted == 100
    for endpoint, configured, overhead in (("chat", CHAT, 25.0), ("embeddings", EMB, 25.0)):
        fit = fits[endpoint]
        half = 2 * (fit.median_ms.high - fit.median_ms.low)
        assert configured["latency_ms"] - half <= fit.median_ms.value <= configured["latency_ms"] + half + overhead, \
            (endpoint, fit.median_ms, half)
        per_token = "ms_per_output_token" if endpoint == "chat" else "ms_per_input_token"
        assert abs(fit.ms_per_token.value - configured[per_token]) <= 2 * (fit.ms_per_token.high - fit.ms_per_token.low)


def test_the_command_refuses_a_bad_upstream_in_one_line(tmp_path, capsys):
    assert main(["proxy", "--upstream", "api.openai.com", "--api-log", str(tmp_path / "x.jsonl")]) == 2
    err = capsys.readouterr().err
    assert "--upstream 'api.openai.com'" in err and "Traceback" not in err
    assert not os.path.exists(tmp_path / "x.jsonl")


REAL_KURA_PROFILE = """
[kura-real]
description = "Kura against a 'real' endpoint (the test's simulator, reached as any endpoint would be)."
backend = "kura"
summary_model = "openai:gpt-4o-mini"
naming_model = "openai:gpt-4o-mini"
embedding_model = "minilm"
clustering = "kmeans"
clustering_params = { clusters_per_group = 10 }
[kura-real.api]
simulate = false
concurrency = 10
api_key_env = "KURA_PERF_TEST_PROXY_KEY"
base_url = "%s"
"""


def test_kuras_own_requests_are_logged_through_the_proxy(fresh, tmp_path, monkeypatch):
    """The kura backend against a real endpoint with an api log: Kura's summarise_conversations, with its
    own openai clients, goes through a proxy the backend starts; the log has one line per request the
    endpoint answered, with its tokens; close() stops the proxy and gives the environment back."""
    from kura_perf.backends.conversion import conversations_to_table
    from kura_perf.backends.kura import KuraBackend
    from kura_perf.corpus import generate_conversations
    from kura_perf.files.outputs import StageData
    from kura_perf.profiles import load_profiles
    from kura_perf.settings.paths import Paths
    from kura_perf.settings.run import RunSettings
    from kura_perf.stages.base import StageInputs

    profiles = tmp_path / "real.toml"
    profiles.write_text(REAL_KURA_PROFILE % fresh.base_url)
    monkeypatch.setenv("KURA_PERF_TEST_PROXY_KEY", SECRET)
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    log = tmp_path / "kura.jsonl"
    settings = RunSettings(paths=Paths(tmp_path / "data"), profiles_file=str(profiles), api_log=str(log))
    backend = KuraBackend(load_profiles(profiles)["kura-real"], settings)
    table = conversations_to_table(generate_conversations(6, seed=3))
    try:
        result = backend.run("summaries", StageInputs(scale_n=6, upstream={"conversations": StageData(
            tables={"main": table})}))
        proxy = backend._proxy
        assert proxy is not None and os.environ["OPENAI_BASE_URL"] == proxy.base_url
        pid = proxy.pid
    finally:
        backend.close()
    assert pid_gone(pid) and "OPENAI_BASE_URL" not in os.environ
    assert result.items_out == 6
    entries = read_log(log)
    served = fresh.log()["by_endpoint"]["chat.completions"]
    assert len(entries) == sum(served["by_status"].values()) >= 6
    assert {e.model for e in entries} == {"gpt-4o-mini"} and all(e.endpoint == "chat" for e in entries)
    assert sum(e.completion_tokens or 0 for e in entries) == served["completion_tokens"] > 0
    assert SECRET not in log.read_text()
