"""`kura-perf calibrate LOG`: fit the simulator's latency model to a request log from a real endpoint.

The model (simulator/config.py EndpointConfig): a request takes a lognormal base time (median, p99)
plus a time per token: per completion token for chat (generation), per prompt token for embeddings
(the batch's size). Fitted per model and endpoint from the successful (2xx) requests of the log
(meter/request_log.py):

1. the per-token time: Theil-Sen's robust slope of latency on tokens (a few slow outliers, which any
   real log has, do not tilt it as they would a least-squares line); negative slopes are clipped to 0;
2. the base: latency minus slope x tokens, per request, then the lognormal's maximum-likelihood
   mu and sigma on its logarithm: median = e^mu, p99 = e^(mu + 2.326 sigma).

Each parameter comes with a 95% interval (Theil-Sen's own for the slope; the normal approximation of
mu's and mu + z sigma's sampling error for median and p99) and the number of requests behind it. The
latency is the client's (request sent to last byte read), so it includes the network and the client's
own overhead: that is what a run against the endpoint would see, so it is what the simulator should
reproduce. 429s and other failures are counted and reported, never fitted.

The profile written holds every fitted model's latency (the simulator's `latency_per_model`), so a log
of two chat models (Kura's summaries on one, naming on another) is simulated with each one's own speed.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from kura_perf.errors import KuraPerfError
from kura_perf.files.atomic import atomic_write_text
from kura_perf.meter.request_log import RequestEntry, read_log
from kura_perf.settings.paths import SAFE_NAME, SAFE_NAME_RULE

_Z_P99 = 2.3263478740408408  # the 99th percentile of a standard normal
_Z_95 = 1.959963984540054  # two-sided 95% interval
_MIN_BASE_S = 1e-4  # a base below 0.1 ms is measurement noise around a slope that ate it
_MAX_SLOPE_POINTS = 2000  # Theil-Sen is O(n^2) in pairs: a fixed random subsample beyond this


@dataclass
class Interval:
    value: float
    low: float
    high: float

    def show(self, unit: str, digits: int = 1) -> str:
        return f"{self.value:.{digits}f} {unit} [{self.low:.{digits}f}, {self.high:.{digits}f}]"


@dataclass
class ModelFit:
    """The latency model of one model on one endpoint, and what it is fitted from."""

    model: str
    endpoint: str  # chat | embeddings
    requests: int  # every logged request
    fitted: int  # the successful ones the fit uses
    rate_limited: int  # 429s
    failed: int  # other non-2xx answers, timeouts, connection errors
    median_ms: Interval | None = None
    p99_ms: Interval | None = None
    ms_per_token: Interval | None = None  # per completion token (chat) or prompt token (embeddings)
    token_range: tuple[int, int] = (0, 0)
    kinds: dict[str, int] = field(default_factory=dict)
    rpm: int | None = None  # the largest x-ratelimit-limit-requests the endpoint sent
    tpm: int | None = None
    note: str = ""

    @property
    def token_field(self) -> str:
        return "completion" if self.endpoint == "chat" else "prompt"

    def endpoint_config(self) -> dict:
        """The simulator's EndpointConfig fields that reproduce this fit."""
        config: dict = {}
        if self.rpm:
            config["rpm"] = self.rpm
        if self.tpm:
            config["tpm"] = self.tpm
        if self.median_ms is not None:
            config["latency_ms"] = round(self.median_ms.value, 3)
            config["p99_ms"] = round(self.p99_ms.value, 3)
            key = "ms_per_output_token" if self.endpoint == "chat" else "ms_per_input_token"
            config[key] = round(self.ms_per_token.value, 5)
        return config


    def latency_config(self) -> dict:
        """The simulator's latency_per_model entry that reproduces this fit: all four latency settings,
        the other endpoint kind's per-token time 0, so none is taken from the endpoint's."""
        chat = self.endpoint == "chat"
        return {"latency_ms": round(self.median_ms.value, 3), "p99_ms": round(self.p99_ms.value, 3),
                "ms_per_output_token": round(self.ms_per_token.value, 5) if chat else 0.0,
                "ms_per_input_token": 0.0 if chat else round(self.ms_per_token.value, 5)}


def _slope(x: np.ndarray, y: np.ndarray) -> tuple[Interval, str]:
    """Theil-Sen slope of y on x with its 95% interval; 0 when x does not vary (nothing to fit)."""
    if len(x) < 3 or np.ptp(x) == 0:
        return Interval(0.0, 0.0, 0.0), "tokens do not vary: no per-token time fitted (0)"
    from scipy.stats import theilslopes

    if len(x) > _MAX_SLOPE_POINTS:
        keep = np.random.default_rng(0).choice(len(x), _MAX_SLOPE_POINTS, replace=False)
        x, y = x[keep], y[keep]
    slope, _, low, high = theilslopes(y, x, 0.95)
    return Interval(max(0.0, float(slope)), max(0.0, float(low)), max(0.0, float(high))), ""


def fit_model(model: str, endpoint: str, entries: list[RequestEntry]) -> ModelFit:
    ok = [e for e in entries if e.ok]
    fit = ModelFit(model=model, endpoint=endpoint, requests=len(entries), fitted=len(ok),
                   rate_limited=sum(1 for e in entries if e.status == 429),
                   failed=sum(1 for e in entries if not e.ok and e.status != 429),
                   kinds=dict(Counter(e.kind or "unknown" for e in entries)))
    fit.rpm = max((e.limit_requests for e in entries if e.limit_requests), default=None)
    fit.tpm = max((e.limit_tokens for e in entries if e.limit_tokens), default=None)
    if len(ok) < 2:
        fit.note = "fewer than 2 successful requests: no latency fitted"
        return fit
    tokens = np.array([(e.completion_tokens if endpoint == "chat" else e.prompt_tokens) or 0 for e in ok],
                      dtype=float)
    latency = np.array([e.latency_s for e in ok], dtype=float)
    slope, fit.note = _slope(tokens, latency)
    base = np.maximum(latency - slope.value * tokens, _MIN_BASE_S)
    logs = np.log(base)
    n = len(logs)
    mu, sigma = float(logs.mean()), float(logs.std(ddof=1))
    # The slope's own error moves every base by (error x tokens): at the mean token count, relative to
    # the base's median, it adds to the sampling error of mu (and of mu + z sigma).
    se_slope = (slope.high - slope.low) / (2 * _Z_95)
    se_shift = se_slope * float(tokens.mean()) / math.exp(mu)
    se_mu = math.sqrt(sigma ** 2 / n + se_shift ** 2)
    se_p99 = math.sqrt(sigma ** 2 * (1 / n + _Z_P99 ** 2 / (2 * (n - 1))) + se_shift ** 2)
    q = mu + _Z_P99 * sigma
    fit.median_ms = Interval(*(1000 * math.exp(v) for v in (mu, mu - _Z_95 * se_mu, mu + _Z_95 * se_mu)))
    fit.p99_ms = Interval(*(1000 * math.exp(v) for v in (q, q - _Z_95 * se_p99, q + _Z_95 * se_p99)))
    fit.ms_per_token = Interval(slope.value * 1000, slope.low * 1000, slope.high * 1000)
    fit.token_range = (int(tokens.min()), int(tokens.max()))
    return fit


def calibrate(entries: list[RequestEntry]) -> list[ModelFit]:
    """One fit per (model, endpoint) of the chat and embeddings requests, most requests first."""
    groups: dict[tuple[str, str], list[RequestEntry]] = {}
    for entry in entries:
        if entry.endpoint in ("chat", "embeddings"):
            groups.setdefault((entry.model, entry.endpoint), []).append(entry)
    fits = [fit_model(model, endpoint, group) for (model, endpoint), group in groups.items()]
    return sorted(fits, key=lambda f: (f.endpoint, -f.requests, f.model))


def calibrate_file(path: str | Path) -> list[ModelFit]:
    entries = read_log(path)
    fits = calibrate(entries)
    if not fits:
        raise KuraPerfError(f"api log {path}: no chat or embeddings requests to fit ({len(entries)} lines)")
    return fits


def describe(fit: ModelFit) -> list[str]:
    """The fit as lines for the terminal: each parameter with its 95% interval and its n."""
    kinds = ", ".join(f"{k} {v}" for k, v in sorted(fit.kinds.items()))
    lines = [f"{fit.model} ({fit.endpoint}): {fit.requests} requests ({kinds}); {fit.fitted} successful fitted, "
             f"{fit.rate_limited} x 429, {fit.failed} other failures"]
    if fit.median_ms is not None:
        lines += [f"  base median   {fit.median_ms.show('ms')}  (n={fit.fitted})",
                  f"  base p99      {fit.p99_ms.show('ms')}  (n={fit.fitted})",
                  f"  per {fit.token_field} token  {fit.ms_per_token.show('ms', 4)}  (n={fit.fitted}, "
                  f"tokens {fit.token_range[0]}..{fit.token_range[1]})"]
    if fit.rpm or fit.tpm:
        lines.append(f"  limits from headers: rpm {fit.rpm or '-'}, tpm {fit.tpm or '-'}")
    if fit.note:
        lines.append(f"  note: {fit.note}")
    return lines


def _toml_value(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    return '"' + str(value).replace("\\", "\\\\").replace('"', '\\"') + '"'


def profile_toml(fits: list[ModelFit], name: str, source: str) -> str:
    """A profile whose simulator reproduces the fits: every fitted model's latency under
    `latency_per_model` (the simulator times each request by the model it names), and each endpoint
    kind's own settings (limits, and the latency of any model the log did not have) from its model with
    the most requests. The profile's summary and naming models are that chat model, its embedding
    model that embeddings model."""
    if not SAFE_NAME.fullmatch(name):
        raise KuraPerfError(f"--profile-name {name!r} is not allowed: use {SAFE_NAME_RULE}")
    chosen = {}
    for endpoint in ("chat", "embeddings"):
        usable = [f for f in fits if f.endpoint == endpoint and f.median_ms is not None]
        if usable:
            chosen[endpoint] = max(usable, key=lambda f: f.fitted)
    if not chosen:
        raise KuraPerfError(f"api log {source}: no model has 2 or more successful requests to fit")
    per_model: dict[str, ModelFit] = {}  # a model logged on both endpoints: its larger fit
    for fit in sorted((f for f in fits if f.median_ms is not None), key=lambda f: -f.fitted):
        per_model.setdefault(fit.model, fit)
    total = sum(f.requests for f in fits)
    stamp = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    lines = [f"# Written by `kura-perf calibrate {source}` on {stamp}: the latency model fitted to "
             f"{total} logged requests.", "# Each parameter: value [95% interval] (n requests)."]
    for fit in fits:
        lines += ["# " + line for line in describe(fit)]
        if fit.median_ms is not None and per_model.get(fit.model) is not fit:
            lines.append(f"#   not used: {fit.model}'s {per_model[fit.model].endpoint} fit has more requests "
                         f"(the simulator takes one latency per model name)")
    chat, emb = chosen.get("chat"), chosen.get("embeddings")
    models = ", ".join(f"{f.model} ({f.endpoint})" for f in chosen.values())
    lines += ["", f"[{name}]",
              f"description = {_toml_value(f'Calibrated from {Path(source).name}: {models} through the simulator, with the fitted latency of every logged model.')}"]
    if chat:
        lines += [f"summary_model = {_toml_value('openai:' + chat.model)}",
                  f"naming_model = {_toml_value('openai:' + chat.model)}"]
    if emb:
        lines += [f"embedding_model = {_toml_value('openai:' + emb.model)}", "batch_size = 100"]
    lines += ["", f"[{name}.api]", "simulate = true", "concurrency = 10"]
    for endpoint, fit in chosen.items():
        lines += ["", f"[{name}.api.simulator.{endpoint}]"]
        lines += [f"{key} = {_toml_value(value)}" for key, value in fit.endpoint_config().items()]
    for model, fit in per_model.items():
        lines += ["", f"[{name}.api.simulator.latency_per_model.{_toml_value(model)}]"]
        lines += [f"{key} = {_toml_value(value)}" for key, value in fit.latency_config().items()]
    return "\n".join(lines) + "\n"


def write_profile(fits: list[ModelFit], name: str, source: str, out: str | Path) -> Path:
    """Write the profile atomically and check it loads as a profile (so a bad write is never left)."""
    import tomllib

    from kura_perf.profiles import parse_profiles

    text = profile_toml(fits, name, source)
    parse_profiles(tomllib.loads(text), str(out))  # refuses here, before anything is written
    out = Path(out)
    atomic_write_text(out, text)
    return out
