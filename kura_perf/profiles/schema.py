"""A profile: one named, validated pipeline configuration."""

from __future__ import annotations

import hashlib
import json
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, Strict, field_validator, model_validator

from kura_perf.datasets import check_data_file
from kura_perf.profiles.values import value_problems
from kura_perf.simulator.config import SimulatorConfig
from kura_perf.stages.truth import DEFAULT_TRUTH_LEVELS, path_problem

# Starts the message of a value check (profiles/values.py), so the loader shows it without pydantic's framing.
PROBLEM_MARK = "profile value: "
# Numbers and switches are strict (Field(strict=True)): TOML has real booleans, integers and floats, so
# `batch_size = true` or `lenient = 1` is a mistake to refuse, not a value to convert (True is not 1).
# A float field still takes an integer (`timeout_s = 10`): that loses nothing.
StrictNumber = Annotated[float, Strict()]


class ApiConfig(BaseModel):
    """Where API-backed models send requests. The key itself is never stored: only the env var's name."""

    model_config = ConfigDict(extra="forbid")

    base_url: str | None = None
    base_url_env: str = "OPENAI_BASE_URL"
    api_key_env: str = "OPENAI_API_KEY"
    simulate: bool = Field(False, strict=True)  # start the local simulator for the run and point base_url at it
    concurrency: int = Field(10, ge=1, le=1000, strict=True)  # requests in flight (adaptive: the start)
    # The reference's API models keep as many requests in flight as the binding limit x latency needs
    # (models/openai_api/adaptive.py), up to max_concurrency; false: a fixed `concurrency`. The kura
    # backend ignores both: Kura's own fixed max_concurrent_requests is what is measured about Kura.
    adaptive: bool = Field(True, strict=True)
    max_concurrency: int = Field(1000, ge=1, le=100_000, strict=True)
    timeout_s: float = Field(30.0, gt=0, strict=True)
    max_retries: int = Field(5, ge=0, le=50, strict=True)
    simulator: dict = Field(default_factory=dict)  # SimulatorConfig fields
    # USD per 1M tokens, {model: [input, output]}, over the built-in table (models/openai_api/prices.py).
    prices: dict[str, tuple[StrictNumber, StrictNumber]] = Field(default_factory=dict)

    @field_validator("prices")
    @classmethod
    def _prices_are_non_negative(cls, value: dict) -> dict:
        for model, (price_in, price_out) in value.items():
            if price_in < 0 or price_out < 0:
                raise ValueError(f"price of '{model}' must be >= 0 USD per 1M tokens (got [{price_in}, {price_out}])")
        return value

    @field_validator("simulator")
    @classmethod
    def _simulator_settings_exist(cls, value: dict) -> dict:
        SimulatorConfig.from_dict(value)  # ValueError names the unknown or bad setting
        return value


class CustomStep(BaseModel):
    """A user step inserted after one stage (the custom pipeline shape): `callable` is "module:function",
    a function StageData -> StageData that takes that stage's output and returns the transformed one."""

    model_config = ConfigDict(extra="forbid")

    callable: str
    after: Literal["conversations", "summaries", "embeddings", "clusters", "meta_clusters"] = "summaries"

    @field_validator("callable")
    @classmethod
    def _module_colon_function(cls, value: str) -> str:
        module, sep, name = value.partition(":")
        if not sep or not module.strip() or not name.strip():
            raise ValueError("expected 'module:function', e.g. 'kura_perf.pipeline.custom_steps:redact_pii'")
        return value


# Keys added after records were first stored: left out of the hash while unset, so profiles that do
# not use them keep the hash (and the regression history) they always had.
_HASHED_ONLY_WHEN_SET = ("custom_step", "embedding_batch_size", "kura_fast_contrastive")
# api keys that change nothing unless the reference backend calls an API model: left out of the hash
# otherwise, so offline and kura profiles keep their hash (and regression history).
_API_KEYS_FOR_REFERENCE_ONLY = ("adaptive", "max_concurrency")
# ... and keys left out while at their default (a value that is not None).
_HASHED_ONLY_WHEN_NOT = {"truth_levels": list(DEFAULT_TRUTH_LEVELS)}
_IMPLIED_BY_KURA = ("embed_text", "meta_grouping")
# Who runs the local MiniLM model. "torch" is sentence-transformers (what Kura runs); "onnx" and
# "onnx-int8" are onnxruntime over an export of the same weights, checked against torch before use
# (kura_perf/models/onnx_export.py). "api" marks vectors from an API embedding model.
EmbeddingBackendName = Literal["torch", "onnx", "onnx-int8", "api"]
LOCAL_EMBEDDING_BACKENDS = ("torch", "onnx", "onnx-int8")
# The reference pipeline's default: the fastest backend whose clustering quality stayed within 0.02 ARI
# of torch (measurements in README, "Embedding backends").
DEFAULT_EMBEDDING_BACKEND = "onnx-int8"
# What a summary row's embed_text is. "summary": the summary text alone, what the reference embeds
# (Kura's tagged layout around short real requests is mostly shared words, which dominate MiniLM's mean
# pooling: CLINC150 10K ARI 0.19 with it; docs/reference-quality.md). "kura-template": Kura's
# str(ConversationSummary) layout, what Kura embeds (the kura backend always, by construction).
EmbedTextName = Literal["summary", "kura-template"]


class Profile(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str
    description: str = ""
    backend: Literal["reference", "kura"] = "reference"
    summary_model: str = "offline"  # "offline", "openai:<model>" or "checkpoint:<Kura summaries.jsonl>"
    naming_model: str = "offline"  # "offline" or "openai:<model>"
    embedding_model: str = "minilm"  # "minilm" or "openai:<model>"
    embedding_dimension: int | None = Field(None, ge=1, le=8192, strict=True)
    # None: the pipeline's default (DEFAULT_EMBEDDING_BACKEND for the reference backend's MiniLM,
    # torch for the kura backend, "api" for an API model); resolved when the profile is validated.
    embedding_backend: EmbeddingBackendName | None = None
    # None: "summary" for the reference backend, "kura-template" for kura (resolved on validation).
    embed_text: EmbedTextName | None = None
    clustering: Literal["umap-hdbscan", "hdbscan", "kmeans", "agglomerative", "minibatch-kmeans"] = "umap-hdbscan"
    clustering_params: dict = Field(default_factory=dict)
    # How the reference's meta-clustering groups clusters: "centroids" (their members' mean vector, the
    # reference default) or "names" (their embedded names, as Kura does). None: resolved on validation
    # ("centroids" for the reference; the kura backend runs Kura's own loop, "names").
    meta_grouping: Literal["centroids", "names"] | None = None
    meta_max_clusters: int = Field(10, ge=1, strict=True)
    meta_max_iterations: int = Field(10, ge=1, le=1000, strict=True)
    projection: Literal["umap", "pca"] = "umap"
    batch_size: int = Field(32, ge=1, le=100_000, strict=True)  # 32: best local-embedding batch measured (README "Embedding backends")
    # The local embedding model's batch (None: batch_size). 1 makes each text's vector depend on that text
    # alone: int8 ONNX quantizes activations per batch tensor, so batch mates moved vectors by up to 0.03
    # (cosine 0.988) and clusterings with them; alone, a text embeds the same at every scale and order.
    embedding_batch_size: int | None = Field(None, ge=1, le=100_000, strict=True)
    # Proposal §2.2: conversations, summaries and embeddings run over the partition this many rows at a
    # time, each batch written before the next is read (peak memory bounded by the batch); None = all at once.
    stream_batch_size: int | None = Field(None, ge=1, le=10_000_000, strict=True)
    # Real conversations (JSONL or a JSON list, optionally gzip-compressed; "builtin:<name>" for a shipped
    # dataset); None (unset): the synthetic generator. An empty string is refused, never taken as "unset".
    data_file: str | None = None
    # Fields holding ground truth, coarse to fine ("topic", or a dotted path into the metadata such as
    # "metadata.domain"): quality is scored at every hierarchy level against each (stages/truth.py); the
    # stage records' own ARI/NMI use the finest (the last).
    truth_levels: list[str] = Field(default_factory=lambda: list(DEFAULT_TRUTH_LEVELS))
    data_format: Literal["auto", "kura", "openai", "sharegpt"] = "auto"
    allow_short_data: bool = Field(False, strict=True)  # run a partition on fewer conversations than its scale if the file is short
    lenient: bool = Field(False, strict=True)  # skip bad input records (counted) instead of failing
    seed: int = Field(0, strict=True)
    memory_limit_mb: int | None = Field(None, ge=64, strict=True)  # stop a stage past this RSS: a breaking point
    stage_timeout_s: float | None = Field(None, gt=0, strict=True)  # stop a stage past this wall time: a breaking point
    # kura backend only: replace Kura's O(n)-per-cluster get_contrastive_examples with the same draw made
    # without its list (backends/kura_fast_contrastive.py), so the stages after clusters can be measured at
    # 100K; a profile setting it must say "patched" in its name. None (unset) keeps the hash of every profile.
    kura_fast_contrastive: bool | None = Field(None, strict=True)
    regression_threshold: float = Field(0.10, gt=0, strict=True)
    budgets_blocking: bool = Field(False, strict=True)
    min_silhouette: float | None = Field(None, strict=True)
    min_ari: float | None = Field(None, strict=True)
    api: ApiConfig = Field(default_factory=ApiConfig)
    custom_step: CustomStep | None = None  # the custom pipeline shape's step (a default is used when unset)

    @staticmethod
    def _data_file_is_a_path(value: str | None) -> str | None:
        """An empty data_file would silently mean the synthetic corpus: refuse it (leave the key out instead)."""
        if value is not None and not value.strip():
            raise ValueError(f"{PROBLEM_MARK}key 'data_file': {value!r} is not a path; expected the path of a "
                             "conversation file (JSONL or a JSON list, optionally .gz), or leave data_file out "
                             "for the synthetic corpus")
        return value

    @field_validator("truth_levels", mode="before")
    @classmethod
    def _truth_levels_are_fields(cls, value):
        """A non-empty list of distinct field names, each 'topic' or 'metadata.<key>[.<key>...]'."""
        if not isinstance(value, (list, tuple)) or not value:
            raise ValueError(f"{PROBLEM_MARK}truth_levels must be a non-empty list of field names, coarse to fine, "
                             f"e.g. [\"metadata.domain\", \"topic\"] (got {value!r})")
        for field in value:
            problem = path_problem(field)
            if problem:
                raise ValueError(f"{PROBLEM_MARK}truth_levels: {problem} (got {field!r})")
        if len(set(value)) != len(value):
            raise ValueError(f"{PROBLEM_MARK}truth_levels names a field twice (got {list(value)!r})")
        return list(value)

    @field_validator("data_file")
    @classmethod
    def _builtin_dataset_exists(cls, value: str | None) -> str | None:
        value = cls._data_file_is_a_path(value)

        try:
            return check_data_file(value)
        except ValueError as exc:  # an unknown builtin:<name>: the message names the known ones
            raise ValueError(f"{PROBLEM_MARK}{exc}") from None

    @model_validator(mode="after")
    def _resolve_embedding_backend(self) -> "Profile":
        """Make embedding_backend concrete (so it is in the profile hash) and refuse combinations that
        cannot run: an ONNX backend for an API model, or for Kura, which runs its own torch model."""
        chosen = self.embedding_backend
        if self.embedding_model.startswith("openai:"):
            if chosen not in (None, "api"):
                raise ValueError(f"embedding_backend '{chosen}' runs the local MiniLM model; embedding_model "
                                 f"'{self.embedding_model}' is an API model (leave embedding_backend unset)")
            self.embedding_backend = "api"
        elif self.backend == "kura":
            if chosen not in (None, "torch"):
                raise ValueError(f"embedding_backend '{chosen}': the kura backend runs Kura's own "
                                 f"sentence-transformers (torch) model; only 'torch' applies")
            self.embedding_backend = "torch"
        elif chosen is None:
            self.embedding_backend = DEFAULT_EMBEDDING_BACKEND
        elif chosen == "api":
            raise ValueError(f"embedding_backend 'api' needs an API embedding_model (got '{self.embedding_model}'); "
                             f"choose one of {', '.join(LOCAL_EMBEDDING_BACKENDS)}")
        return self

    @model_validator(mode="after")
    def _resolve_embed_text(self) -> "Profile":
        """Make embed_text and meta_grouping concrete (both are in the profile hash); Kura embeds its own
        layout and groups by names, nothing else."""
        if self.backend == "kura":
            if self.embed_text not in (None, "kura-template"):
                raise ValueError(f"embed_text '{self.embed_text}': the kura backend embeds Kura's own "
                                 f"str(ConversationSummary) layout; only 'kura-template' applies")
            self.embed_text = "kura-template"
        elif self.embed_text is None:
            self.embed_text = "summary"
        if self.kura_fast_contrastive and self.backend != "kura":
            raise ValueError("kura_fast_contrastive: replaces a function of Kura's; the reference backend has none "
                             "(set backend = \"kura\" or drop it)")
        if self.kura_fast_contrastive and "patched" not in self.name:
            raise ValueError("kura_fast_contrastive = true: the profile's name must say 'patched' (its clusters-stage "
                             "time is not Kura's own)")
        if self.backend == "kura":
            if self.meta_grouping not in (None, "names"):
                raise ValueError(f"meta_grouping '{self.meta_grouping}': the kura backend runs Kura's own "
                                 f"meta-cluster loop over embedded names; only 'names' applies")
            self.meta_grouping = "names"
        elif self.meta_grouping is None:
            self.meta_grouping = "centroids"
        return self

    @model_validator(mode="after")
    def _values_fit_together(self) -> "Profile":
        """Model names, the embedding dimension and clustering_params, checked when the profile is
        built: a bad value is refused before any stage runs (see profiles/values.py)."""

        problems = value_problems(self)
        if problems:
            raise ValueError(PROBLEM_MARK + "; ".join(problems))
        return self

    def content_hash(self) -> str:
        """Identity of what is measured: two runs compare only when this matches (the description does not count)."""
        payload = self.model_dump(exclude={"description", "name"})
        for key in _HASHED_ONLY_WHEN_SET:
            if payload.get(key) is None:
                payload.pop(key, None)
        for key, default in _HASHED_ONLY_WHEN_NOT.items():
            if payload.get(key) == default:
                payload.pop(key, None)
        if payload.get("backend") == "kura":  # fixed by the backend (Kura's own layout and loop): no choice to hash
            for key in _IMPLIED_BY_KURA:
                payload.pop(key, None)
        if payload.get("backend") == "kura" or not self.uses_api():
            for key in _API_KEYS_FOR_REFERENCE_ONLY:
                payload["api"].pop(key, None)
        return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()[:12]

    def uses_api(self) -> bool:
        return any(m.startswith("openai:") for m in (self.summary_model, self.naming_model, self.embedding_model))
