"""`kura-perf predict`: each API stage's time at a scale, from the latency model, the concurrency and the
rate limits, without running anything.

Per API stage: the calls and tokens at that scale (measured per conversation in the store's records of
the profile when there are any, else from the pipeline's rules below), then three lower bounds on its
time, of which the largest binds:

  latency      waves x mean latency, waves = calls / concurrency (the client's requests in flight:
               api.max_concurrency, the adaptive ceiling, for the reference with api.adaptive; else
               api.concurrency, the fixed bound Kura and a non-adaptive reference keep); the
               reference summarises batch_size conversations at a time, each batch waiting for its
               last answer, so there a batch of b calls takes ceil(b / concurrency) waves plus the wait
               for its slowest answer (the expected largest of min(b, concurrency) lognormal draws,
               Blom's approximation, less the mean)
  RPM          (calls - burst) / (rpm / 60)          (the endpoint's request limit, after its burst)
  TPM          (tokens - burst) / (tpm / 60)         (its token limit: prompt + completion, as admitted)

Mean latency is the lognormal's mean (median x e^(sigma^2/2)) plus the per-token time (chat: per
completion token; embeddings: per prompt token), all from the profile's simulator settings (the
simulator's defaults where unset): a calibrated profile (`kura-perf calibrate`) predicts its endpoint.
The time is the stage's API time only; clustering and other local work come on top.

Rules without records (stated per stage as the count's source): a summary per conversation; one
embedding request per batch_size texts; a name per base cluster (k-means: ceil(n / clusters_per_group);
HDBSCAN: an assumed n / 20); meta-clusters: the reference's rounds until meta_max_clusters roots, each
round dividing the roots by 1.5 (stages/meta_clusters.py), one name per new parent.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from kura_perf.models.protocols import adaptive_input_chunk
from kura_perf.profiles import Profile
from kura_perf.simulator.config import EndpointConfig, SimulatorConfig
from kura_perf.stages.meta_clusters import MEMBER_REDUCTION

# Tokens per request when no record says otherwise (estimates from the reference's prompts on the
# synthetic corpus; a measured run of the profile replaces them).
SUMMARY_TOKENS = (450, 120)  # prompt (template + transcript + schema), completion
NAME_TOKENS = (900, 60)
EMBED_TOKENS_PER_TEXT = 60
ASSUMED_CONVERSATIONS_PER_CLUSTER = 20


@dataclass
class StagePrediction:
    stage: str
    endpoint: str  # chat | embeddings
    model: str
    calls: int
    tokens_in: int
    tokens_out: int
    source: str  # where the counts come from
    latency_s: float
    rpm_s: float
    tpm_s: float
    mean_latency_ms: float
    concurrency: int

    @property
    def time_s(self) -> float:
        return max(self.latency_s, self.rpm_s, self.tpm_s)

    @property
    def binds(self) -> str:
        bounds = {"latency": self.latency_s, "RPM": self.rpm_s, "TPM": self.tpm_s}
        return max(bounds, key=bounds.get)


def mean_latency_s(endpoint: EndpointConfig, kind: str, tokens_in: float, tokens_out: float) -> float:
    """The mean of one request's latency: the lognormal base's mean plus its per-token time."""
    params = endpoint.lognormal_params()
    base = 0.0 if params is None else math.exp(params[0] + params[1] ** 2 / 2)
    per_token = endpoint.ms_per_output_token * tokens_out if kind == "chat" else endpoint.ms_per_input_token * tokens_in
    return base + per_token / 1000.0


def waves(calls: int, concurrency: int, batch: int | None) -> float:
    """Rounds of `concurrency` requests in flight; with `batch`, each batch of calls ends before the next."""
    if not batch or batch >= calls:
        return calls / concurrency
    full, rest = divmod(calls, batch)
    return full * math.ceil(batch / concurrency) + (math.ceil(rest / concurrency) if rest else 0)


def slowest_extra_s(endpoint: EndpointConfig, draws: int) -> float:
    """How much longer the slowest of `draws` base latencies is than their mean (Blom's approximation)."""
    params = endpoint.lognormal_params()
    if params is None or draws < 2:
        return 0.0
    from statistics import NormalDist

    mu, sigma = params
    z = NormalDist().inv_cdf((draws - 0.375) / (draws + 0.25))
    return max(0.0, math.exp(mu + sigma * z) - math.exp(mu + sigma ** 2 / 2))


def bound_times(calls: int, tokens: int, mean_s: float, concurrency: int, endpoint: EndpointConfig,
                burst_s: float, batch: int | None = None) -> tuple[float, float, float]:
    """(latency, RPM, TPM) lower bounds of the time `calls` requests take, in seconds."""
    latency = waves(calls, concurrency, batch) * mean_s
    if batch and batch < calls:
        latency += math.ceil(calls / batch) * slowest_extra_s(endpoint, min(batch, concurrency))
    rpm = 0.0 if not endpoint.rpm else max(0.0, calls - endpoint.rpm * burst_s / 60) / (endpoint.rpm / 60)
    tpm = 0.0 if not endpoint.tpm else max(0.0, tokens - endpoint.tpm * burst_s / 60) / (endpoint.tpm / 60)
    return latency, rpm, tpm


def _api_model(spec: str) -> str | None:
    return spec.split(":", 1)[1] if spec.startswith("openai:") else None


def _base_clusters(profile: Profile, n: int) -> tuple[int, str]:
    if profile.clustering in ("kmeans", "minibatch-kmeans"):
        per_group = int(profile.clustering_params.get("clusters_per_group", 10))
        return math.ceil(n / per_group), f"k-means: ceil(n / {per_group}) clusters"
    return max(1, round(n / ASSUMED_CONVERSATIONS_PER_CLUSTER)), \
        f"assumed n / {ASSUMED_CONVERSATIONS_PER_CLUSTER} clusters ({profile.clustering}: data-dependent)"


def _meta_rounds(profile: Profile, clusters: int) -> list[int]:
    """The roots after each reduction round (each round names its new parents)."""
    roots, rounds = clusters, []
    while roots > profile.meta_max_clusters and len(rounds) < profile.meta_max_iterations:
        roots = max(1, math.ceil(roots / MEMBER_REDUCTION))
        rounds.append(roots)
    return rounds


def rule_counts(profile: Profile, n: int) -> list[tuple[str, str, str, int, int, int, str]]:
    """(stage, endpoint, model, calls, tokens_in, tokens_out, source) per API stage, from the rules."""
    out = []
    summary, namer, embedder = (_api_model(profile.summary_model), _api_model(profile.naming_model),
                                _api_model(profile.embedding_model))
    if summary:
        out.append(("summaries", "chat", summary, n, n * SUMMARY_TOKENS[0], n * SUMMARY_TOKENS[1],
                    "rule: a summary per conversation"))
    if embedder:
        calls = math.ceil(n / profile.batch_size)
        out.append(("embeddings", "embeddings", embedder, calls, n * EMBED_TOKENS_PER_TEXT, 0,
                    f"rule: a request per {profile.batch_size} texts"))
    clusters, why = _base_clusters(profile, n)
    if namer:
        out.append(("clusters", "chat", namer, clusters, clusters * NAME_TOKENS[0], clusters * NAME_TOKENS[1],
                    f"rule: a name per cluster, {why}"))
        rounds = _meta_rounds(profile, clusters)
        parents = sum(rounds)
        out.append(("meta_clusters", "chat", namer, parents, parents * NAME_TOKENS[0], parents * NAME_TOKENS[1],
                    f"rule: {len(rounds)} rounds of /{MEMBER_REDUCTION:g} from {clusters} clusters"))
        if profile.meta_grouping == "names" and embedder:
            calls = sum(math.ceil(r * MEMBER_REDUCTION / profile.batch_size) for r in rounds)
            out.append(("meta_clusters", "embeddings", embedder, calls, calls * 20, 0,
                        "rule: the roots' names embedded each round"))
    return out


def measured_counts(profile: Profile, n: int, records: list[dict]) -> dict[str, tuple[int, int, int, str]]:
    """Per stage, calls and tokens scaled linearly from the largest measured run of the profile."""
    out = {}
    for record in sorted(records, key=lambda r: r.get("scale_n") or 0):
        stage, measured_n = record.get("stage"), record.get("scale_n")
        if not measured_n or not record.get("api_calls"):
            continue
        factor = n / measured_n
        out[stage] = (round(record["api_calls"] * factor), round((record.get("tokens_in") or 0) * factor),
                      round((record.get("tokens_out") or 0) * factor),
                      f"measured: {record['api_calls']} calls at {measured_n}, scaled x{factor:g}")
    return out


def predict(profile: Profile, n: int, records: list[dict] | None = None) -> list[StagePrediction]:
    """Every API stage of `profile` at `n` conversations. `records`: the profile's successful stage records
    (stage, scale_n, api_calls, tokens_in, tokens_out); their counts replace the rules'."""
    config = SimulatorConfig.from_dict(profile.api.simulator)
    measured = measured_counts(profile, n, records or [])
    predictions = []
    for stage, endpoint_kind, model, calls, tokens_in, tokens_out, source in rule_counts(profile, n):
        if stage in measured and not (stage == "meta_clusters" and endpoint_kind == "embeddings"):
            calls, tokens_in, tokens_out, source = measured[stage]
        # The latency the simulator answers this model with: its published parameters (latency_models.py)
        # unless the profile fixes the endpoint's own, over the speed factor (the endpoint's defaults
        # alone under-predicted Kura's 10K summaries 3x).
        endpoint = config.latency_endpoint(endpoint_kind, model)
        per_call = (tokens_in / calls, tokens_out / calls) if calls else (0, 0)
        mean_s = mean_latency_s(endpoint, endpoint_kind, *per_call) / config.speed_factor
        # The adaptive client (the reference's default) may keep up to max_concurrency in flight.
        adaptive = profile.api.adaptive and profile.backend == "reference"
        concurrency = profile.api.max_concurrency if adaptive else profile.api.concurrency
        batch = profile.batch_size if stage == "summaries" and profile.backend == "reference" else None
        if batch and adaptive:  # the adaptive model takes large chunks (stages/summaries.py)
            batch = max(batch, adaptive_input_chunk(concurrency))
        latency, rpm, tpm = bound_times(calls, tokens_in + tokens_out, mean_s, concurrency, endpoint, config.burst_s,
                                        batch)
        predictions.append(StagePrediction(stage, endpoint_kind, model, calls, tokens_in, tokens_out, source,
                                           latency, rpm, tpm, mean_s * 1000, concurrency))
    return predictions


def describe(predictions: list[StagePrediction], profile: Profile, n: int) -> list[str]:
    if not predictions:
        return [f"profile '{profile.name}' calls no API model: nothing to predict"]
    lines = [f"{profile.name} at {n:,} conversations: API time per stage (local work comes on top)",
             f"{'stage':<14} {'endpoint':<10} {'calls':>9} {'tokens in':>12} {'tokens out':>11} "
             f"{'latency s':>10} {'RPM s':>9} {'TPM s':>9} {'time s':>9}  binds"]
    for p in predictions:
        lines.append(f"{p.stage:<14} {p.endpoint:<10} {p.calls:>9,} {p.tokens_in:>12,} {p.tokens_out:>11,} "
                     f"{p.latency_s:>10.1f} {p.rpm_s:>9.1f} {p.tpm_s:>9.1f} {p.time_s:>9.1f}  {p.binds}")
    lines.append("")
    adaptive = profile.api.adaptive and profile.backend == "reference"
    ceiling = " (the adaptive ceiling, api.max_concurrency: a lower bound that assumes the limit allows it)" \
        if adaptive else ""
    for p in predictions:
        lines.append(f"  {p.stage} ({p.endpoint}, {p.model}): {p.source}; mean latency {p.mean_latency_ms:.0f} ms "
                     f"at {p.concurrency} in flight{ceiling}")
    return lines
