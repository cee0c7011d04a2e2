"""The published per-model latency (simulator/latency_models.py): draws reproduce each model's median
and p99 within sampling error, the request's model picks the parameters, settings and speed_factor
behave as documented. Draws from a seeded generator: no wall clock anywhere."""

from __future__ import annotations

import math
import random

import pytest

from kura_perf.simulator.config import EndpointConfig, SimulatorConfig
from kura_perf.simulator.latency_models import PUBLISHED, draw_latency_s, published_model
from kura_perf.simulator.server import SimulatorState

N = 40_000
REQUIRED = ("gpt-4o-mini", "gpt-4o", "gpt-4.1-mini", "claude-3-haiku", "text-embedding-3-small",
            "text-embedding-3-large")


def _quantile_bounds(draws: list[float], q: float) -> tuple[float, float]:
    """A distribution-free ~99.99% interval for the q-quantile: the order statistics at ranks
    N q -/+ 4 sqrt(N q (1 - q)) (the count of draws below the true quantile is Binomial(N, q))."""
    ordered = sorted(draws)
    spread = 4 * math.sqrt(N * q * (1 - q))
    return ordered[max(int(N * q - spread), 0)], ordered[min(int(N * q + spread), N - 1)]


def test_the_required_models_are_published_with_a_source_for_every_parameter():
    for name in REQUIRED:
        model = PUBLISHED[name]
        used = {"latency_ms", "p99_ms"} | {f for f in ("ms_per_output_token", "ms_per_input_token")
                                           if getattr(model, f)}
        assert used <= set(model.sources), name
        assert all(model.sources[f].strip() for f in used), name
        assert model.p99_ms > model.latency_ms > 0, name
    assert all(PUBLISHED[m].ms_per_output_token > 0 for m in REQUIRED if PUBLISHED[m].kind == "chat")
    assert all(PUBLISHED[m].ms_per_input_token > 0 for m in REQUIRED if PUBLISHED[m].kind == "embeddings")


@pytest.mark.parametrize("name", REQUIRED)
def test_draws_reproduce_the_models_median_and_p99(name):
    endpoint = PUBLISHED[name].applied_to(EndpointConfig())
    rng = random.Random(24)
    draws = [draw_latency_s(endpoint, rng) * 1000 for _ in range(N)]
    for q, configured in ((0.5, endpoint.latency_ms), (0.99, endpoint.p99_ms)):
        low, high = _quantile_bounds(draws, q)
        assert low <= configured <= high, (name, q, low, configured, high)


def test_tokens_add_their_time_and_speed_factor_divides_all_of_it():
    endpoint = EndpointConfig(latency_ms=100, p99_ms=400, ms_per_output_token=10, ms_per_input_token=0.5)
    plain = [draw_latency_s(endpoint, random.Random(7), 1000, 20) for _ in range(3)]
    base = draw_latency_s(endpoint, random.Random(7))
    assert plain[0] == pytest.approx(base + (20 * 10 + 1000 * 0.5) / 1000)
    assert draw_latency_s(endpoint, random.Random(7), 1000, 20, speed_factor=10) == pytest.approx(plain[0] / 10)


def test_each_request_is_timed_by_its_own_models_parameters():
    config = SimulatorConfig.from_dict({"seed": 3})
    assert config.speed_factor == 1.0 and config.model_latency == ["chat", "embeddings"]
    mini, big = config.latency_endpoint("chat", "gpt-4o-mini"), config.latency_endpoint("chat", "gpt-4o")
    assert (mini.latency_ms, mini.ms_per_output_token) != (big.latency_ms, big.ms_per_output_token)
    assert config.latency_endpoint("chat", "gpt-4o-mini-2024-07-18") == mini  # a dated snapshot
    assert config.latency_endpoint("chat", "gpt-4o-mini").rpm == config.chat.rpm  # limits stay the config's
    assert config.latency_endpoint("chat", "some-local-model") == config.chat  # unknown: the endpoint's own
    assert published_model("text-embedding-3-small", "chat") is None  # wrong kind: not applied
    # The server's draws in one run: the two models' medians differ as their parameters say.
    state = SimulatorState(config)
    medians = {}
    for model in ("gpt-4o-mini", "gpt-4o"):
        draws = sorted(state.latency_s("chat", model, 500, 0) for _ in range(4001))
        medians[model] = draws[2000]
    assert medians["gpt-4o-mini"] > medians["gpt-4o"] * 1.2  # 716 ms vs 450 ms published TTFT


def test_embeddings_latency_grows_with_the_batchs_tokens():
    small = PUBLISHED["text-embedding-3-small"]
    fixed = SimulatorState(SimulatorConfig.from_dict(
        {"embeddings": {"latency_ms": small.latency_ms, "p99_ms": 0,
                        "ms_per_input_token": small.ms_per_input_token}}))
    one, batch = fixed.latency_s("embeddings", "text-embedding-3-small", 100, 0), \
        fixed.latency_s("embeddings", "text-embedding-3-small", 10_000, 0)
    assert batch - one == pytest.approx((10_000 - 100) * small.ms_per_input_token / 1000)


def test_fixed_latency_settings_are_the_configs_for_every_model():
    config = SimulatorConfig.from_dict({"latency_ms": 2, "p99_ms": 8})
    assert config.model_latency == []
    assert config.latency_endpoint("chat", "gpt-4o").latency_ms == 2
    chat_only = SimulatorConfig.from_dict({"chat_latency_ms": 5})
    assert chat_only.model_latency == ["embeddings"]
    kept = SimulatorConfig.from_dict({"chat": {"latency_ms": 5}, "model_latency": ["chat", "embeddings"]})
    assert kept.latency_endpoint("chat", "gpt-4o").latency_ms == PUBLISHED["gpt-4o"].latency_ms
    # A round trip (what SimulatorProcess sends its child) keeps the choice.
    assert SimulatorConfig.from_dict(chat_only.to_dict()).model_latency == ["embeddings"]


@pytest.mark.parametrize("bad", [0, -1, "fast", True, float("inf")])
def test_a_bad_speed_factor_is_refused_with_its_name(bad):
    with pytest.raises(ValueError, match="speed_factor"):
        SimulatorConfig.from_dict({"speed_factor": bad})


def test_the_shipped_simulated_profiles_run_at_the_models_real_speed_unless_named_scaled():
    """A shipped profile runs the simulator at each model's real speed; the only exceptions are named
    `*-scaled` and say in their description that their times are scaled (never a prediction)."""
    from kura_perf.profiles import get_profile, load_profiles

    simulated = [p for p in load_profiles().values() if p.api.simulate]
    assert {"simulated-openai", "reference-simulated", "kura-tier5", "kura"} <= {p.name for p in simulated}
    scaled = []
    for profile in simulated:
        config = SimulatorConfig.from_dict(profile.api.simulator)
        assert config.model_latency == ["chat", "embeddings"], profile.name
        if config.speed_factor != 1.0:
            scaled.append(profile.name)
            assert profile.name.endswith("-scaled"), profile.name
            assert f"scaled x{config.speed_factor:g}" in profile.description, profile.name
        else:
            assert not profile.name.endswith("-scaled"), profile.name
    assert "kura-defaults" not in scaled and "reference-defaults" not in scaled
    config = SimulatorConfig.from_dict(get_profile("reference-simulated").api.simulator)
    assert config.latency_endpoint("chat", "gpt-4o-mini").latency_ms == PUBLISHED["gpt-4o-mini"].latency_ms


def test_a_configs_own_latency_per_model_comes_first_and_names_only_its_model():
    """latency_per_model (what calibrate writes) times its models, their dated snapshots and 'openai:'
    names too, before the published table; 'gpt-4o' never times 'gpt-4o-mini'; limits stay the endpoint's."""
    config = SimulatorConfig.from_dict({"chat": {"rpm": 42}, "latency_per_model": {
        "gpt-4o": {"latency_ms": 11.0, "p99_ms": 22.0, "ms_per_output_token": 0.0}}})
    for name in ("gpt-4o", "gpt-4o-2024-08-06", "openai:gpt-4o"):
        endpoint = config.latency_endpoint("chat", name)
        assert (endpoint.latency_ms, endpoint.p99_ms, endpoint.ms_per_output_token, endpoint.rpm) == (11.0, 22.0, 0.0, 42)
    assert config.latency_endpoint("chat", "gpt-4o-mini").latency_ms == 716.0  # its published median
    assert SimulatorConfig.from_dict(config.to_dict()).latency_per_model == config.latency_per_model
    with pytest.raises(ValueError, match="latency_per_model.gpt-4o.latency"):
        SimulatorConfig.from_dict({"latency_per_model": {"gpt-4o": {"latency": 1}}})
    with pytest.raises(ValueError, match="latency_per_model.gpt-4o.p99_ms must be a number >= 0"):
        SimulatorConfig.from_dict({"latency_per_model": {"gpt-4o": {"p99_ms": -1}}})
