"""The api log (meter/request_log.py) and `kura-perf calibrate` (experiments/calibrate.py): a log our client
writes against the real simulator, with known latency parameters, is fitted back to those parameters."""

import json
import math
import tomllib

import pytest

from kura_perf.cli.main import main
from kura_perf.corpus.types import Conversation, Message
from kura_perf.models.openai_api import ApiSettings, OpenAIClusterNamer, OpenAIEmbedding, OpenAISummaryModel
from kura_perf.profiles import load_profiles
from kura_perf.simulator import SimulatorConfig
from kura_perf_tests.simulator_fixtures import fresh_simulator, shared_simulator

pytestmark = pytest.mark.slow

SECRET = "sk-test-calibrate-NEVER-LOGGED"
# Latencies large next to scheduling noise on a loaded box (ms), and per-token times that move a
# request by tens of ms across the token counts the requests have.
CHAT = {"latency_ms": 150.0, "p99_ms": 300.0, "ms_per_output_token": 1.0}
EMB = {"latency_ms": 80.0, "p99_ms": 160.0, "ms_per_input_token": 0.2}
CONFIG = {"chat": {**CHAT, "rpm": None, "tpm": None}, "embeddings": {**EMB, "rpm": None, "tpm": None}, "seed": 5}

sim = shared_simulator(CONFIG)
fresh = fresh_simulator(CONFIG)


def settings(sim, log, **overrides) -> ApiSettings:
    values = dict(base_url=sim.base_url, api_key=SECRET, timeout_s=10.0, max_retries=8, concurrency=60,
                  backoff_base_s=0.01, backoff_max_s=0.05, seed=1, api_log=str(log))
    return ApiSettings(**(values | overrides))


def conversations(n: int) -> list[Conversation]:
    from datetime import datetime, timezone

    now = datetime(2024, 1, 1, tzinfo=timezone.utc)
    words = "router password kubernetes recipe invoice python dataframe holiday".split()
    return [Conversation(chat_id=f"c{i}", created_at=now, messages=[
        Message("user", f"case {i}: " + " ".join(words[(i + k) % len(words)] for k in range(3 + i % 40)), now),
        Message("assistant", "Here is how to approach it.", now)]) for i in range(n)]


def texts(n: int) -> list[str]:
    """Texts of 5 to ~1,000 tokens, so the batches' prompt tokens spread widely."""
    return [("word%d " % i) * (5 + (i * 37) % 500) for i in range(n)]


def test_the_log_has_one_line_per_request_and_no_content_nor_key(fresh, tmp_path):
    """Every HTTP request is one line (429s and retries too), with kind and retry number; the prompt's
    text and the key appear nowhere."""
    log = tmp_path / "api.jsonl"
    fresh.configure(faults={"rate_limit_rate": 0.3, "forced_retry_after_s": 0.01})
    with OpenAISummaryModel("gpt-4o-mini", settings(fresh, log)) as summariser:
        summariser.summarise(conversations(20))
        calls = summariser.counters.calls
    with OpenAIClusterNamer("gpt-4o-mini", settings(fresh, log)) as namer:
        namer.name_clusters([["reset my router"], ["banana bread"]])
    with OpenAIEmbedding("text-embedding-3-small", settings=settings(fresh, log), batch_size=4) as embedder:
        embedder.embed(["a", "b", "c", "d", "e"])
    text = log.read_text()
    lines = [json.loads(line) for line in text.splitlines()]
    assert SECRET not in text and "router" not in text and "case 1" not in text
    summaries = [e for e in lines if e["kind"] == "summary"]
    assert len(summaries) == calls  # retries included
    assert sum(1 for e in summaries if e["status"] == 429) == calls - 20
    assert all(e["retry"] > 0 for e in summaries if e["status"] == 200 and e["retry"]) and \
        any(e["retry"] > 0 for e in summaries)
    ok = [e for e in summaries if e["status"] == 200]
    assert len(ok) == 20 and all(e["completion_tokens"] > 0 and e["prompt_tokens"] > 0 for e in ok)
    assert all(e["endpoint"] == "chat" and e["model"] == "gpt-4o-mini" for e in summaries)
    assert [e["kind"] for e in lines[len(summaries):]].count("cluster_name") >= 2
    emb = [e for e in lines if e["endpoint"] == "embeddings"]
    assert [e["kind"] for e in emb if e["status"] == 200] == ["embeddings", "embeddings"]
    log_429s = fresh.log()["by_endpoint"]["chat.completions"]["by_status"].get("429", 0)
    assert sum(1 for e in lines if e["status"] == 429) == log_429s  # the server's own count


def test_calibrate_recovers_the_simulators_parameters(fresh, tmp_path, capsys):
    """Known latency (CHAT, EMB) -> a log from our client -> `kura-perf calibrate` -> the profile's simulator
    settings give back the configured median, p99 and per-token times. The tolerance is derived from n:
    4 standard errors of each fitted parameter (the fit's own 95% interval, doubled) plus, for the base
    times, an allowance for what the client adds to every request on a loaded box (the log measures
    the client's latency, so connection handling and scheduling are in it; they only add)."""
    log = tmp_path / "api.jsonl"
    with OpenAISummaryModel("gpt-4o-mini", settings(fresh, log)) as summariser:
        summariser.summarise(conversations(300))
    with OpenAIEmbedding("text-embedding-3-small", settings=settings(fresh, log), batch_size=3) as embedder:
        embedder.embed(texts(450))
    out = tmp_path / "fitted.toml"
    assert main(["calibrate", str(log), "--profile-name", "fitted", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "(n=300)" in printed and "(n=150)" in printed

    profile = load_profiles(out)["fitted"]
    assert profile.summary_model == "openai:gpt-4o-mini" and profile.api.simulate
    config = SimulatorConfig.from_dict(profile.api.simulator)
    from kura_perf.experiments.calibrate import calibrate_file

    fits = {f.endpoint: f for f in calibrate_file(log)}
    overhead_ms = {"latency_ms": 25.0, "p99_ms": 120.0}
    for endpoint, configured, per_token in (("chat", CHAT, "ms_per_output_token"),
                                            ("embeddings", EMB, "ms_per_input_token")):
        fit, fitted = fits[endpoint], config.endpoint(endpoint)
        for name, interval in (("latency_ms", fit.median_ms), ("p99_ms", fit.p99_ms)):
            half = 2 * (interval.high - interval.low)  # 4 standard errors
            value = getattr(fitted, name)
            assert configured[name] - half <= value <= configured[name] + half + overhead_ms[name], \
                (endpoint, name, value, configured[name], half)
        half = 2 * (fit.ms_per_token.high - fit.ms_per_token.low)
        assert abs(getattr(fitted, per_token) - configured[per_token]) <= half, \
            (endpoint, per_token, getattr(fitted, per_token), half)
        assert math.isclose(getattr(fitted, per_token), fit.ms_per_token.value, rel_tol=1e-3)


def test_a_bad_log_line_is_refused_naming_file_and_line(tmp_path, capsys):
    log = tmp_path / "api.jsonl"
    good = {"ts": "t", "model": "m", "endpoint": "chat", "status": 200, "latency_s": 0.1, "retry": 0,
            "completion_tokens": 10}
    log.write_text(json.dumps(good) + "\n" + json.dumps({**good, "latency_s": "slow"}) + "\n")
    out = tmp_path / "p.toml"
    assert main(["calibrate", str(log), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert f"{log}:2" in err and "latency_s" in err and "Traceback" not in err
    assert not out.exists()
    log.write_text(json.dumps(good) + "\n{not json\n")
    assert main(["calibrate", str(log), "--out", str(out)]) == 2
    assert f"{log}:2: not a JSON object" in capsys.readouterr().err and not out.exists()


def test_the_profile_is_valid_toml_with_429s_reported(tmp_path, capsys):
    """429s are counted, not fitted; a second chat model's fit is kept as a comment."""
    log = tmp_path / "api.jsonl"
    rows = []
    for i in range(40):
        rows.append({"ts": "t", "model": "gpt-4o-mini", "endpoint": "chat", "kind": "summary",
                     "status": 429 if i % 10 == 0 else 200, "latency_s": 0.1 + 0.001 * i, "retry": 0,
                     "prompt_tokens": 100, "completion_tokens": 10 + i})
    rows += [{**rows[1], "model": "gpt-4o"}, {**rows[2], "model": "gpt-4o"}, {**rows[3], "model": "gpt-4o"}]
    log.write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = tmp_path / "p.toml"
    assert main(["calibrate", str(log), "--out", str(out)]) == 0
    assert "36 successful fitted, 4 x 429" in capsys.readouterr().out
    profile = tomllib.loads(out.read_text())["calibrated"]
    assert profile["summary_model"] == "openai:gpt-4o-mini"
    assert set(profile["api"]["simulator"]["latency_per_model"]) == {"gpt-4o-mini", "gpt-4o"}  # both kept


def test_two_chat_models_calibrate_to_each_ones_own_latency(fresh, tmp_path):
    """A simulator timing two chat models apart (latency_per_model) -> our client's log -> calibrate -> a
    profile whose simulator times each model with its own fit: each model's median drawn from that
    simulator is the configured one, within 4 standard errors of the fit plus the client's overhead, and
    the slow model stays slow (one latency per endpoint kind would give both the same)."""
    medians = {"gpt-4o-mini": 120.0, "gpt-4o": 400.0}
    # no per-token time: the namer's answers are all about one length, so a slope could not be told apart
    fresh.configure(latency_per_model={m: {"latency_ms": v, "p99_ms": 2 * v, "ms_per_output_token": 0.0}
                                       for m, v in medians.items()})
    log = tmp_path / "api.jsonl"
    for model in medians:
        with OpenAIClusterNamer(model, settings(fresh, log)) as namer:
            namer.name_clusters([[f"topic {i} {model}"] for i in range(150)])
    out = tmp_path / "two.toml"
    assert main(["calibrate", str(log), "--profile-name", "two", "--out", str(out)]) == 0
    from kura_perf.experiments.calibrate import calibrate_file
    from kura_perf.simulator.server import SimulatorState

    fits = {f.model: f for f in calibrate_file(log)}
    state = SimulatorState(SimulatorConfig.from_dict(load_profiles(out)["two"].api.simulator))
    for model, configured in medians.items():
        fit = fits[model]
        half = 2 * (fit.median_ms.high - fit.median_ms.low)  # 4 standard errors of the fit
        draws = sorted(state.latency_s("chat", model, 0, 0) * 1000 for _ in range(4001))
        simulated = draws[2000]
        # 4,001 draws: the sample median's own error is a small part of `half`; 25 ms: what the client
        # adds to every request on a loaded box (it only adds)
        assert configured - 2 * half <= simulated <= configured + 2 * half + 25.0, (model, simulated, fit.median_ms)
    assert fits["gpt-4o"].median_ms.low > fits["gpt-4o-mini"].median_ms.high
