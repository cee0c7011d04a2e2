"""How fast each model answers, from public measurements: the simulator's default latency per model.

A chat request takes time to first token (lognormal: median, p99) plus its output tokens at the
model's output speed (`ms_per_output_token` = 1000 / tokens per second); an embeddings request takes a
per-request latency (lognormal) plus time per input token of the batch (`ms_per_input_token`). These are
the same fields as a profile's `simulator.chat` / `simulator.embeddings` settings (EndpointConfig), so a
calibrated fit (`kura-perf calibrate`) and a published model are interchangeable.

The simulator picks the parameters by the model name each request sends (dated snapshots and
'openai:' prefixes included), so gpt-4o and gpt-4o-mini differ within one run. A profile that sets
latency numbers itself (latency_ms, p99_ms, ms_per_output_token, ms_per_input_token) uses its own
numbers for every model of that endpoint kind instead (SimulatorConfig.model_latency). A model not in
the table gets the endpoint's settings. A config's own `latency_per_model` (what `kura-perf calibrate`
writes: each model's fitted latency) comes before all of these for the models it names.

Every parameter carries its source: the page, the date it was seen, what the page measured and, where
it gives a range or several figures, which value was chosen and why. Figures were read on 2026-12-07
from stored copies of the pages (third-party measurements of the public APIs, not provider guarantees).
Where no p99 is published, p99 = `TAIL_RATIO` x median, the one published tail of a chat API below.
Speed varies by region, hour and prompt length; a team's own `kura-perf calibrate` beats these.
"""

from __future__ import annotations

import math
import random
import re
from dataclasses import dataclass, field, replace
from types import MappingProxyType
from typing import Mapping

from kura_perf.simulator.models import CHAT, EMBEDDINGS

AA_GPT4O_LATEST = ("https://induwara.lk/tools/ai-llm-speed-comparison (Artificial Analysis medians, "
                   "'last verified 2026-06-24'; seen 2026-12-07)")
OPENAI_COMMUNITY_SPEED = ("https://community.openai.com/t/inference-speed-of-different-models/1307310 "
                          "(`tacho` run, 500-token answers, avg/min/max t/s; seen 2026-12-07)")
NEWMEN_GPT4O_MINI = ("https://newmen.ai/models/openai/gpt-4o-mini (live router traffic, OpenAI provider: "
                     "latency p50 716 ms / p95 4091 ms, throughput p50 28 / p95 67 tok/s; seen 2026-12-07)")
AA_GPT41_MINI = ("https://artificialanalysis.ai/models/gpt-4-1-mini/providers (OpenAI: 77.2 t/s, TTFT 0.93 s "
                 "at AA's 10k-input-token workload; seen 2026-12-07)")
LMSPEED_GPT41_MINI = ("https://lmspeed.net/compare/model/gpt-4-1-mini-vs-gpt-4-1-nano (time to first answer "
                      "token 0.56 s; seen 2026-12-07)")
VERCEL_CLAUDE3_HAIKU = ("https://vercel.com/ai-gateway/models/claude-3-haiku (AI Gateway live traffic, P50: "
                        "Amazon Bedrock 0.3 s TTFT / 95 tps, Google Vertex 0.4 s / 146 tps; seen 2026-12-07)")
EMBEDDINGS_API_RANGE = ("https://agentsurface.dev/docs/data-retrievability/embeddings (text-embedding-3-small "
                        "and -large: '100-300ms (API)'; seen 2026-12-07)")
EMBEDDINGS_BATCH = ("https://agentbeck.bot/report/62258 (text-embedding-3-large: '100 docs in 200-300ms total' "
                    "vs 50-100 ms per single document; seen 2026-12-07)")

# p99 / median where a source gives no tail: the gpt-4o-mini live-traffic p95 / p50 (NEWMEN_GPT4O_MINI,
# 4091 / 716 = 5.7), taken as p99 / median (a lighter tail than extrapolating that p95 to a p99).
TAIL_RATIO = 4091 / 716


@dataclass(frozen=True)
class LatencyModel:
    """One model's latency parameters (the EndpointConfig latency fields) and where each comes from."""

    name: str
    kind: str
    latency_ms: float  # chat: time to first token, median; embeddings: per-request latency, median
    p99_ms: float
    ms_per_output_token: float = 0.0  # chat: 1000 / output tokens per second
    ms_per_input_token: float = 0.0  # embeddings: time per token of the batch
    sources: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "sources", MappingProxyType(dict(self.sources)))

    def applied_to(self, endpoint):
        """The endpoint settings (limits kept) with this model's latency."""
        return replace(endpoint, latency_ms=self.latency_ms, p99_ms=self.p99_ms,
                       ms_per_output_token=self.ms_per_output_token, ms_per_input_token=self.ms_per_input_token)


def _tps(tokens_per_s: float) -> float:
    return round(1000.0 / tokens_per_s, 3)


PUBLISHED: Mapping[str, LatencyModel] = MappingProxyType({m.name: m for m in (
    LatencyModel(
        "gpt-4o-mini", CHAT, latency_ms=716.0, p99_ms=4091.0, ms_per_output_token=_tps(59.0),
        sources={
            "latency_ms": f"{NEWMEN_GPT4O_MINI}: the p50 716 ms. The page does not say whether 'latency' is to "
                          f"the first token or the whole answer; taken as TTFT (the slower reading for short answers).",
            "p99_ms": f"{NEWMEN_GPT4O_MINI}: the published p95 4091 ms, used as p99 (no p99 is published; "
                      f"a lognormal through p50 and p95 would put p99 at 8.4 s).",
            "ms_per_output_token": f"{OPENAI_COMMUNITY_SPEED}: gpt-4o-mini avg 59.0 t/s (range 46.1-69.9); "
                                   f"the average is used. The router page's 28 (p50) / 67 (p95) tok/s includes TTFT.",
        }),
    LatencyModel(
        "gpt-4o", CHAT, latency_ms=450.0, p99_ms=round(450.0 * TAIL_RATIO, 1), ms_per_output_token=_tps(131.0),
        sources={
            "latency_ms": f"{AA_GPT4O_LATEST}: GPT-4o on the OpenAI API, TTFT 0.45 s (AA's own gpt-4o May '24 "
                          f"page gave 0.39 s; the later figure is used).",
            "p99_ms": "no published tail: TAIL_RATIO x median (see TAIL_RATIO).",
            "ms_per_output_token": f"{AA_GPT4O_LATEST}: 131 t/s. Published figures range 31.7 t/s "
                                   f"({OPENAI_COMMUNITY_SPEED}) to 131 t/s; AA's latest median is used.",
        }),
    LatencyModel(
        "gpt-4.1-mini", CHAT, latency_ms=560.0, p99_ms=round(560.0 * TAIL_RATIO, 1), ms_per_output_token=_tps(77.2),
        sources={
            "latency_ms": f"{LMSPEED_GPT41_MINI}: 0.56 s. Range 0.56-0.93 s: AA's 0.93 s ({AA_GPT41_MINI}) is "
                          f"for 10k-token prompts; Kura's prompts are ~1-2k tokens, so the lower figure is used.",
            "p99_ms": "no published tail: TAIL_RATIO x median (see TAIL_RATIO).",
            "ms_per_output_token": f"{AA_GPT41_MINI}: 77.2 t/s on OpenAI (range 61.7 t/s, {OPENAI_COMMUNITY_SPEED}, "
                                   f"to 107.9 t/s on Azure); OpenAI's own figure is used.",
        }),
    LatencyModel(
        "claude-3-haiku", CHAT, latency_ms=300.0, p99_ms=round(300.0 * TAIL_RATIO, 1), ms_per_output_token=_tps(95.0),
        sources={
            "latency_ms": f"{VERCEL_CLAUDE3_HAIKU}: 0.3 s (Bedrock; Vertex 0.4 s). Bedrock, the slower-generating "
                          f"of the two, is used for both figures so they describe one endpoint.",
            "p99_ms": "no published tail: TAIL_RATIO x median (see TAIL_RATIO).",
            "ms_per_output_token": f"{VERCEL_CLAUDE3_HAIKU}: 95 tps (Bedrock; range 95-146).",
        }),
    LatencyModel(
        "text-embedding-3-small", EMBEDDINGS, latency_ms=100.0, p99_ms=300.0, ms_per_input_token=0.015,
        sources={
            "latency_ms": f"{EMBEDDINGS_API_RANGE}: the range's low end, 100 ms, for the smaller model.",
            "p99_ms": f"{EMBEDDINGS_API_RANGE}: the range's high end, 300 ms, taken as p99.",
            "ms_per_input_token": f"{EMBEDDINGS_BATCH}: a 100-document batch adds ~150 ms over one document "
                                  f"(250 ms vs ~100 ms); at ~100 tokens per document (our assumption: the page "
                                  f"gives no lengths) that is 0.015 ms per token. Measured on -large; used for both.",
        }),
    LatencyModel(
        "text-embedding-3-large", EMBEDDINGS, latency_ms=200.0, p99_ms=600.0, ms_per_input_token=0.015,
        sources={
            "latency_ms": f"{EMBEDDINGS_API_RANGE}: the middle of 100-300 ms for the larger model (the page gives "
                          f"one range for both; that -large is slower is our assumption).",
            "p99_ms": f"{EMBEDDINGS_API_RANGE}: the same 3x high/low spread as -small, 600 ms.",
            "ms_per_input_token": f"{EMBEDDINGS_BATCH}: as text-embedding-3-small (the measurement is of -large).",
        }),
)})


_SNAPSHOT = re.compile(r"-\d[\d-]*")  # a dated snapshot's suffix: -2024-07-18, -0613


def lookup_name(model: str | None, known, any_suffix: bool = True) -> str | None:
    """The key of `known` (names) a request's model name stands for: the exact name, else the bare
    lower-case id ('openai:' and any 'org/' prefix dropped), else its longest known prefix (a dated
    snapshot 'gpt-4o-mini-2024-07-18' -> 'gpt-4o-mini'); None when none matches. any_suffix=False
    takes a prefix only before a snapshot's date, so a config naming 'gpt-4o' alone never times
    'gpt-4o-mini' (the published table holds both, so it keeps matching any suffix)."""
    if not model:
        return None
    if model in known:
        return model
    name = model.split(":", 1)[1] if model.startswith("openai:") else model
    name = name.rsplit("/", 1)[-1].lower()
    lowered = {str(key).lower(): key for key in known}
    if name in lowered:
        return lowered[name]
    prefixes = [key for key in lowered if name.startswith(key + "-")
                and (any_suffix or _SNAPSHOT.fullmatch(name[len(key):]))]
    return lowered[max(prefixes, key=len)] if prefixes else None


def published_model(model: str | None, kind: str | None = None) -> LatencyModel | None:
    """The published parameters for a request's model name: exact id, else the longest known prefix
    ('gpt-4o-mini-2024-07-18' -> gpt-4o-mini, 'openai:gpt-4o' -> gpt-4o); None when unknown or of the
    other endpoint kind."""
    if not model:
        return None
    found = PUBLISHED.get(lookup_name(model, PUBLISHED) or "")
    if found is not None and kind is not None and found.kind != kind:
        return None
    return found


def lognormal_params(median_ms: float, p99_ms: float) -> tuple[float, float] | None:
    """(mu, sigma) in log-seconds of the lognormal through the median and p99; None for no latency."""
    if median_ms <= 0:
        return None
    mu = math.log(median_ms / 1000.0)
    if p99_ms <= median_ms:
        return mu, 0.0
    return mu, (math.log(p99_ms) - math.log(median_ms)) / Z_P99


# z-score of the 99th percentile of a standard normal: p99 = median * exp(2.326 * sigma).
Z_P99 = 2.3263478740408408


def draw_latency_s(endpoint, rng: random.Random, prompt_tokens: int = 0, completion_tokens: int = 0,
                   speed_factor: float = 1.0) -> float:
    """One request's latency: the lognormal base plus time per output and per input token, divided by
    speed_factor (10 = ten times faster than the model: a scaled run, never a prediction)."""
    params = lognormal_params(endpoint.latency_ms, endpoint.p99_ms)
    base = 0.0
    if params is not None:
        mu, sigma = params
        base = rng.lognormvariate(mu, sigma) if sigma > 0 else math.exp(mu)
    per_token = endpoint.ms_per_output_token * completion_tokens + endpoint.ms_per_input_token * prompt_tokens
    return (base + per_token / 1000.0) / speed_factor
