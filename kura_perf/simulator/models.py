"""The models the simulator serves, and the per-request limits the real API holds them to.

OpenAI answers a request for a model it does not have with 404 model_not_found; a simulator that
answers 200 to any name hides a typo in a profile until the first real run. So only known models
are served: the table below (every model a built-in profile, the Kura backend or the price table
names, with their public context and output limits), their dated snapshots ("gpt-4o-mini-2024-07-18"),
and whatever the config adds under `models` (a list of names, or {name: {kind, context_tokens,
max_output_tokens}}; "*" serves any name, as a gateway would). A run whose profile starts the
simulator adds the profile's own models (`profile_models`), so pointing a profile at another model
name does not break it.

Limits (OpenAI's model pages, 2025): chat context window and maximum output tokens per model;
embeddings at most 8192 tokens per input and 300,000 tokens per request.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Iterable

ANY_MODEL = "*"
CHAT, EMBEDDINGS = "chat", "embeddings"
KINDS = (CHAT, EMBEDDINGS)

# A model the config names without limits gets these (gpt-4o-mini's: a common size for a chat model).
DEFAULT_CONTEXT_TOKENS = 128_000
DEFAULT_MAX_OUTPUT_TOKENS = 16_384
EMBEDDING_INPUT_TOKENS = 8_192  # per input
EMBEDDING_REQUEST_TOKENS = 300_000  # all inputs of one request
MAX_N = 128  # chat `n`: choices per request

_SNAPSHOT = re.compile(r"^(?P<base>.+)-\d{4}-\d{2}-\d{2}$")  # gpt-4o-mini-2024-07-18


@dataclass(frozen=True)
class ModelSpec:
    """kind: the endpoint that serves it (None: either). context_tokens: prompt + completion for chat,
    one input for embeddings."""

    kind: str | None
    context_tokens: int
    max_output_tokens: int = 0


def _chat(context: int, output: int) -> ModelSpec:
    return ModelSpec(CHAT, context, output)


_EMBEDDING = ModelSpec(EMBEDDINGS, EMBEDDING_INPUT_TOKENS)

BUILT_IN_MODELS: dict[str, ModelSpec] = {
    "gpt-4o-mini": _chat(128_000, 16_384),
    "gpt-4o": _chat(128_000, 16_384),
    "gpt-4.1": _chat(1_047_576, 32_768),
    "gpt-4.1-mini": _chat(1_047_576, 32_768),
    "gpt-4.1-nano": _chat(1_047_576, 32_768),
    "gpt-5": _chat(400_000, 128_000),
    "gpt-5-mini": _chat(400_000, 128_000),
    "gpt-5-nano": _chat(400_000, 128_000),
    "o3": _chat(200_000, 100_000),
    "o4-mini": _chat(200_000, 100_000),
    "gpt-3.5-turbo": _chat(16_385, 4_096),
    "text-embedding-3-small": _EMBEDDING,
    "text-embedding-3-large": _EMBEDDING,
    "text-embedding-ada-002": _EMBEDDING,
}

_SPEC_KEYS = ("kind", "context_tokens", "max_output_tokens")


def normalise_models(value: Any) -> dict[str, dict]:
    """The `models` setting as {name: spec dict}: a name, a list of names, or a mapping of names to
    specs ({} for the defaults). ValueError names what is wrong."""
    if value is None:
        return {}
    if isinstance(value, str):
        value = [value]
    if isinstance(value, (list, tuple)):
        if not all(isinstance(name, str) and name for name in value):
            raise ValueError(f"models: expected model names (strings), got {value!r}")
        return {name: {} for name in value}
    if not isinstance(value, dict):
        raise ValueError(f"models: expected a list of model names or a table of them, got {type(value).__name__}")
    out: dict[str, dict] = {}
    for name, spec in value.items():
        spec = {} if spec is None else spec
        if not isinstance(spec, dict):
            raise ValueError(f"models.{name}: expected a table with {', '.join(_SPEC_KEYS)}, got {spec!r}")
        unknown = set(spec) - set(_SPEC_KEYS)
        if unknown:
            raise ValueError(f"models.{name}: unknown key(s) {', '.join(sorted(unknown))}; "
                             f"allowed: {', '.join(_SPEC_KEYS)}")
        if spec.get("kind") not in (None, *KINDS):
            raise ValueError(f"models.{name}.kind: expected one of {', '.join(KINDS)}, got {spec['kind']!r}")
        for key in ("context_tokens", "max_output_tokens"):
            if key in spec and (isinstance(spec[key], bool) or not isinstance(spec[key], int) or spec[key] < 1):
                raise ValueError(f"models.{name}.{key}: expected a positive integer, got {spec[key]!r}")
        out[str(name)] = dict(spec)
    return out


def _from_config(spec: dict) -> ModelSpec:
    kind = spec.get("kind")
    context = spec.get("context_tokens", EMBEDDING_INPUT_TOKENS if kind == EMBEDDINGS else DEFAULT_CONTEXT_TOKENS)
    output = spec.get("max_output_tokens", 0 if kind == EMBEDDINGS else DEFAULT_MAX_OUTPUT_TOKENS)
    return ModelSpec(kind, context, output)


class ModelTable:
    """Look-ups of the built-in models plus the config's."""

    def __init__(self, extra: dict[str, dict] | None = None):
        self.extra = {name: _from_config(spec) for name, spec in (extra or {}).items()}

    def lookup(self, name: str) -> ModelSpec | None:
        """The model's spec, or None when it is not served (answer 404 model_not_found)."""
        for table in (self.extra, BUILT_IN_MODELS):
            if name in table:
                return table[name]
        snapshot = _SNAPSHOT.match(name)
        if snapshot and snapshot["base"] in BUILT_IN_MODELS:
            return BUILT_IN_MODELS[snapshot["base"]]
        return self.extra.get(ANY_MODEL)

    def names(self) -> list[str]:
        """What GET /v1/models lists (the "*" wildcard is not a model)."""
        return [*BUILT_IN_MODELS, *(n for n in self.extra if n not in BUILT_IN_MODELS and n != ANY_MODEL)]


def profile_models(profile) -> list[str]:
    """The API model names a profile sends (its 'openai:<model>' keys), for the simulator it starts."""
    specs = (getattr(profile, key, None) for key in ("summary_model", "naming_model", "embedding_model"))
    return sorted({s.split(":", 1)[1] for s in specs if isinstance(s, str) and s.startswith("openai:")})


def with_models(extra: dict[str, dict], names: Iterable[str]) -> dict[str, dict]:
    """`extra` plus the named models not already served (built in or configured), with default limits."""
    table = ModelTable(extra)
    return {**extra, **{name: {} for name in names if table.lookup(name) is None}}
