"""What the simulator does: limits, latency and faults, per endpoint kind.

Everything is a plain dataclass so a profile's `simulator = {...}` table, a JSON blob on the command
line and `POST /_sim/config` all go through the same `from_dict`.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any

from kura_perf.proposal import TYPICAL_CHAT_RPM, TYPICAL_EMBEDDINGS_RPM
from kura_perf.simulator.latency_models import lognormal_params, lookup_name, published_model
from kura_perf.simulator.models import normalise_models, with_models

LOOPBACK = "127.0.0.1"
ENDPOINT_KINDS = ("chat", "embeddings")

# OpenAI's own cap on a request body: "Maximum content size limit (26214400) exceeded" (413). Bigger
# bodies are refused before they are read, so one request cannot make the server hold hundreds of MB.
MAX_BODY_BYTES = 25 * 1024 * 1024

# The latency settings of an endpoint: setting any of them in a config takes that endpoint kind off the
# published per-model latency (SimulatorConfig.model_latency).
LATENCY_KEYS = ("latency_ms", "p99_ms", "ms_per_output_token", "ms_per_input_token")


@dataclass
class EndpointConfig:
    """Limits and latency of one endpoint kind; a limit of None means unlimited."""

    rpm: int | None = None
    tpm: int | None = None
    latency_ms: float = 0.0  # median
    p99_ms: float = 0.0  # 99th percentile; <= median means a fixed latency
    ms_per_output_token: float = 0.0  # chat: generation time grows with the answer
    ms_per_input_token: float = 0.0  # embeddings: latency grows with the batch's tokens (chat too, if set)

    def lognormal_params(self) -> tuple[float, float] | None:
        """(mu, sigma) of the lognormal whose median and p99 match the config; None for no latency."""
        return lognormal_params(self.latency_ms, self.p99_ms)


@dataclass
class FaultConfig:
    """Injected failures. Rates are probabilities per request, drawn independently in this order:
    outage window, dropped connection, 5xx, forced 429, then (after the real rate-limit buckets)
    a slow response."""

    error_rate: float = 0.0  # 500 or 503
    rate_limit_rate: float = 0.0  # forced 429s, independent of the RPM/TPM buckets
    timeout_rate: float = 0.0  # answer only after slow_response_s (longer than a client timeout)
    drop_rate: float = 0.0  # close the connection without any response
    slow_response_s: float = 30.0
    forced_retry_after_s: float = 1.0  # retry-after sent with forced 429s
    outages: list[tuple[float, float]] = field(default_factory=list)  # (start_s after boot, duration_s)


def _default_chat() -> EndpointConfig:
    # A typical OpenAI tier for gpt-4o-mini-class models: the proposal's §3.3 RPM.
    return EndpointConfig(rpm=TYPICAL_CHAT_RPM, tpm=200_000, latency_ms=300.0, p99_ms=1500.0, ms_per_output_token=5.0)


def _default_embeddings() -> EndpointConfig:
    return EndpointConfig(rpm=TYPICAL_EMBEDDINGS_RPM, tpm=1_000_000, latency_ms=80.0, p99_ms=400.0)


@dataclass
class SimulatorConfig:
    """The whole simulator. `burst_s` sets bucket capacity: limit * burst_s / 60 (60 = a full minute,
    like OpenAI's headers; smaller = limits enforced over shorter periods, as OpenAI also does).
    `models`: models served besides the built-in ones (simulator/models.py): a list of names or
    {name: {kind, context_tokens, max_output_tokens}}; "*" serves any name. `max_body_bytes`: larger
    request bodies get 413.

    Latency: the endpoint kinds listed in `model_latency` answer each request with the published latency
    of the model it names (simulator/latency_models.py: real speed), falling back to the endpoint's own
    settings for a model not in that table; a kind not listed uses its endpoint settings for every model.
    Setting any latency key of a kind (latency_ms, p99_ms, ms_per_output_token, ms_per_input_token) takes
    it off the list unless `model_latency` is set too: a fixed latency is the config's, not a model's.
    `latency_per_model` ({model name: {latency_ms, p99_ms, ms_per_output_token, ms_per_input_token}},
    what `kura-perf calibrate` writes from each model's fit) times the requests for those models with
    their own numbers (keys not given are the endpoint's), before anything above; dated snapshots and
    'openai:' names match as for the published table. Limits stay per endpoint kind.
    `speed_factor` divides every latency (10 = ten times faster than the model); anything but 1 makes the
    run's times scaled, never a prediction, and every stage record carries the factor."""

    host: str = LOOPBACK
    port: int = 0  # 0 = any free port
    chat: EndpointConfig = field(default_factory=_default_chat)
    embeddings: EndpointConfig = field(default_factory=_default_embeddings)
    faults: FaultConfig = field(default_factory=FaultConfig)
    burst_s: float = 60.0
    seed: int = 0
    verbose: bool = False  # one stderr line per request (never headers, so never a key)
    models: dict[str, dict] = field(default_factory=dict)
    max_body_bytes: int = MAX_BODY_BYTES
    model_latency: list[str] = field(default_factory=lambda: list(ENDPOINT_KINDS))
    speed_factor: float = 1.0
    latency_per_model: dict[str, dict] = field(default_factory=dict)

    def _check_latency_per_model(self) -> None:
        if not isinstance(self.latency_per_model, dict):
            raise ValueError(f"latency_per_model must be a table of model name -> latency settings "
                             f"(got {self.latency_per_model!r})")
        checked = {}
        for model, values in self.latency_per_model.items():
            if not isinstance(values, dict) or not values:
                raise ValueError(f"latency_per_model.{model}: expected a table of {', '.join(LATENCY_KEYS)}")
            for key, value in values.items():
                if key not in LATENCY_KEYS:
                    raise ValueError(f"unknown simulator setting latency_per_model.{model}.{key} "
                                     f"(expected {', '.join(LATENCY_KEYS)})")
                if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) \
                        or value < 0:
                    raise ValueError(f"latency_per_model.{model}.{key} must be a number >= 0 (got {value!r})")
            checked[str(model)] = {key: float(value) for key, value in values.items()}
        self.latency_per_model = checked

    def __post_init__(self) -> None:
        self.models = normalise_models(self.models)
        self._check_latency_per_model()
        if isinstance(self.model_latency, str):
            self.model_latency = [self.model_latency]
        if not isinstance(self.model_latency, (list, tuple)) or not set(self.model_latency) <= set(ENDPOINT_KINDS):
            raise ValueError(f"model_latency must list endpoint kinds out of {', '.join(ENDPOINT_KINDS)} "
                             f"(got {self.model_latency!r})")
        self.model_latency = [k for k in ENDPOINT_KINDS if k in self.model_latency]
        if isinstance(self.speed_factor, bool) or not isinstance(self.speed_factor, (int, float)) \
                or not math.isfinite(self.speed_factor) or self.speed_factor <= 0:
            raise ValueError(f"speed_factor must be a number > 0 (got {self.speed_factor!r}); "
                             f"1 = the model's real speed, 10 = ten times faster")
        self.speed_factor = float(self.speed_factor)
        if isinstance(self.max_body_bytes, bool) or not isinstance(self.max_body_bytes, int) \
                or self.max_body_bytes < 1:
            raise ValueError(f"max_body_bytes must be a positive integer (got {self.max_body_bytes!r})")
        if self.host != LOOPBACK:
            raise ValueError(f"the simulator binds to {LOOPBACK} only (got host={self.host!r})")
        if not 0 <= self.port <= 65535:
            raise ValueError(f"port must be 0..65535 (got {self.port})")
        if self.burst_s <= 0:
            raise ValueError(f"burst_s must be > 0 (got {self.burst_s})")
        for name in ("error_rate", "rate_limit_rate", "timeout_rate", "drop_rate"):
            rate = getattr(self.faults, name)
            if not 0.0 <= rate <= 1.0:
                raise ValueError(f"faults.{name} must be within 0..1 (got {rate})")
        self.faults.outages = [(float(s), float(d)) for s, d in self.faults.outages]

    def serving(self, names) -> "SimulatorConfig":
        """A copy that also serves these model names (a profile's own models), each with default limits
        unless already known."""
        return replace(self, models=with_models(self.models, names))

    def endpoint(self, kind: str) -> EndpointConfig:
        return self.chat if kind == "chat" else self.embeddings

    def latency_endpoint(self, kind: str, model: str | None) -> EndpointConfig:
        """The settings a request for `model` is timed with: the config's latency_per_model entry for it,
        else the model's published latency when this kind uses it and the model is known, else the
        endpoint's own. Limits are always the endpoint's."""
        endpoint = self.endpoint(kind)
        own = lookup_name(model, self.latency_per_model, any_suffix=False)
        if own is not None:  # the config's own numbers for this model (calibrated): before any other
            return replace(endpoint, **self.latency_per_model[own])
        published = published_model(model, kind) if kind in self.model_latency else None
        return published.applied_to(endpoint) if published is not None else endpoint

    @property
    def scaled(self) -> bool:
        """True when times are sped up (or slowed down) from the model's: not a prediction."""
        return self.speed_factor != 1.0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> "SimulatorConfig":
        return cls().updated(data or {})

    def updated(self, data: dict[str, Any]) -> "SimulatorConfig":
        """A copy with `data` applied. Accepts nested tables ({"chat": {"rpm": 10}, "faults": {...}})
        and flat shortcuts: rpm/tpm/latency_ms/p99_ms (both kinds), chat_rpm, embeddings_tpm, ...,
        fault_rate (= error_rate), error_rate, drop_rate, ..., outages. Setting latency_ms without
        p99_ms keeps the distribution's shape (p99/median ratio)."""
        chat, emb, faults = replace(self.chat), replace(self.embeddings), replace(self.faults)
        faults.outages = list(faults.outages)
        top: dict[str, Any] = {}
        endpoint_keys = {f.name for f in fields(EndpointConfig)}
        fault_keys = {f.name for f in fields(FaultConfig)}
        top_keys = {f.name for f in fields(SimulatorConfig)} - {"chat", "embeddings", "faults"}
        fixed: set[str] = set()  # endpoint kinds given latency numbers of their own
        for key, value in data.items():
            if key in ("chat", "embeddings") and isinstance(value, dict):
                target = chat if key == "chat" else emb
                for sub_key, sub_value in value.items():
                    if sub_key not in endpoint_keys:
                        raise ValueError(f"unknown simulator setting {key}.{sub_key}")
                    setattr(target, sub_key, sub_value)
                    if sub_key in LATENCY_KEYS:
                        fixed.add(key)
            elif key == "faults" and isinstance(value, dict):
                for sub_key, sub_value in value.items():
                    name = "error_rate" if sub_key == "fault_rate" else sub_key
                    if name not in fault_keys:
                        raise ValueError(f"unknown simulator setting faults.{sub_key}")
                    setattr(faults, name, sub_value)
            elif key in endpoint_keys:
                setattr(chat, key, value)
                setattr(emb, key, value)
                if key in LATENCY_KEYS:
                    fixed.update(ENDPOINT_KINDS)
            elif key.startswith(("chat_", "embeddings_")) and key.split("_", 1)[1] in endpoint_keys:
                kind, name = key.split("_", 1)
                setattr(chat if kind == "chat" else emb, name, value)
                if name in LATENCY_KEYS:
                    fixed.add(kind)
            elif key == "fault_rate":
                faults.error_rate = value
            elif key in fault_keys:
                setattr(faults, key, value)
            elif key in top_keys:
                top[key] = value
            else:
                raise ValueError(f"unknown simulator setting {key!r}")
        for old, new in ((self.chat, chat), (self.embeddings, emb)):
            if new.latency_ms != old.latency_ms and new.p99_ms == old.p99_ms:
                ratio = old.p99_ms / old.latency_ms if old.latency_ms > 0 else 1.0
                new.p99_ms = new.latency_ms * max(1.0, ratio)
        return SimulatorConfig(
            host=top.get("host", self.host),
            port=int(top.get("port", self.port)),
            chat=chat,
            embeddings=emb,
            faults=faults,
            burst_s=float(top.get("burst_s", self.burst_s)),
            seed=int(top.get("seed", self.seed)),
            verbose=bool(top.get("verbose", self.verbose)),
            models=top.get("models", self.models),
            max_body_bytes=top.get("max_body_bytes", self.max_body_bytes),
            model_latency=top.get("model_latency", [k for k in self.model_latency if k not in fixed]),
            speed_factor=top.get("speed_factor", self.speed_factor),
            latency_per_model=top.get("latency_per_model", self.latency_per_model),
        )
