"""The checks on a profile's values that its types alone cannot express: model names, the embedding
dimension a model gives, the clustering parameters a method takes.

They run whenever a profile is built (loading a profiles file, `kura-perf run`, a Dagster asset), so a
bad value is refused before any stage runs, not after upstream stages have spent their time. Each
problem names the key, the value and what is allowed; the caller adds the profile and file.
"""

from __future__ import annotations

import inspect

from kura_perf.errors import KuraPerfError
from kura_perf.models.clustering import METHODS

API_PREFIX = "openai:"
LLM_CHOICES = "'offline' or 'openai:<model>' (e.g. 'openai:gpt-4o-mini')"
# summary_model may also name a Kura summaries checkpoint (models/checkpoint_summary.py).
CHECKPOINT_PREFIX = "checkpoint:"
SUMMARY_CHOICES = LLM_CHOICES + " or 'checkpoint:<path to Kura's summaries.jsonl>'"
# Local embedding models (by profile name) and the dimension each gives.
LOCAL_EMBEDDING_DIMENSIONS = {"minilm": 384}
# Dimensions of OpenAI's embedding models. text-embedding-3 models can be asked for fewer ("dimensions");
# other models give their native size only. Models not listed (a compatible endpoint's) are not checked.
OPENAI_NATIVE_DIMENSIONS = {"text-embedding-3-small": 1536, "text-embedding-3-large": 3072,
                            "text-embedding-ada-002": 1536}
SHORTENABLE_PREFIX = "text-embedding-3"
# The clustering parameters Kura's own methods take (the kura backend passes clustering_params to them).
KURA_CLUSTERING_PARAMS = {
    "kmeans": ("clusters_per_group",),
    # Kura 0.5.4's MiniBatchKmeansClusteringMethod (sklearn's MiniBatchKMeans): Kura's own answer to k-means
    # at 100K+; the reference pipeline has no such method.
    "minibatch-kmeans": ("clusters_per_group", "batch_size", "max_iter", "random_state"),
    "hdbscan": ("min_cluster_size", "min_samples", "cluster_selection_epsilon", "alpha",
                "cluster_selection_method", "metric"),
}


def _quote(value) -> str:
    return repr(value)


def _llm_problem(key: str, spec: str) -> str | None:
    choices = SUMMARY_CHOICES if key == "summary_model" else LLM_CHOICES
    if spec == "offline":
        return None
    if key == "summary_model" and spec.startswith(CHECKPOINT_PREFIX):
        if not spec[len(CHECKPOINT_PREFIX):].strip():
            return f"key '{key}': {_quote(spec)} names no file after 'checkpoint:'; expected {choices}"
        return None
    if not spec.startswith(API_PREFIX):
        hint = f"; did you mean 'openai:{spec}'?" if spec and ":" not in spec else ""
        return f"key '{key}': {_quote(spec)} is not allowed; expected {choices}{hint}"
    if not spec[len(API_PREFIX):].strip():
        return f"key '{key}': {_quote(spec)} names no model after 'openai:'; expected {choices}"
    return None


def _checkpoint_problems(profile) -> list[str]:
    """Summaries from a Kura checkpoint go through the reference pipeline's summaries stage; the kura
    backend runs Kura's own summariser (and embeds str(ConversationSummary) with Kura's metadata)."""
    if profile.summary_model.startswith(CHECKPOINT_PREFIX) and profile.backend == "kura":
        return [f"key 'summary_model': {_quote(profile.summary_model)} is read by the reference backend only; "
                "the kura backend makes its own summaries (set backend = 'reference')"]
    return []


def _embedding_problems(spec: str, dim: int | None) -> list[str]:
    allowed = " or ".join(f"'{name}'" for name in LOCAL_EMBEDDING_DIMENSIONS) + " or 'openai:<model>'"
    if spec in LOCAL_EMBEDDING_DIMENSIONS:
        native = LOCAL_EMBEDDING_DIMENSIONS[spec]
        if dim not in (None, native):
            return [f"key 'embedding_dimension': {dim} does not match embedding_model '{spec}', which gives "
                    f"{native}-d vectors; set {native} or leave it unset"]
        return []
    if not spec.startswith(API_PREFIX):
        return [f"key 'embedding_model': {_quote(spec)} is not allowed; expected {allowed} "
                "(e.g. 'openai:text-embedding-3-small')"]
    model = spec[len(API_PREFIX):].strip()
    if not model:
        return [f"key 'embedding_model': {_quote(spec)} names no model after 'openai:'; expected {allowed}"]
    native = OPENAI_NATIVE_DIMENSIONS.get(model)
    if dim is None or native is None:
        return []
    if model.startswith(SHORTENABLE_PREFIX):
        if dim > native:
            return [f"key 'embedding_dimension': {dim} is more than {model} gives ({native}); "
                    f"allowed: 1..{native}"]
        return []
    if dim != native:
        return [f"key 'embedding_dimension': {dim} does not match {model}, which gives {native}-d vectors "
                f"only; set {native} or leave it unset"]
    return []


def reference_clustering_params(method: str) -> tuple[str, ...]:
    """The keyword arguments our reference clustering method of this name takes."""

    return tuple(name for name in inspect.signature(METHODS[method].__init__).parameters if name != "self")


def _clustering_problems(backend: str, method: str, params: dict) -> list[str]:
    if backend == "kura":
        allowed = KURA_CLUSTERING_PARAMS.get(method)
        if allowed is None:  # the kura backend's own check names the methods it offers
            return []
        owner = f"Kura's {method}"
    elif method not in METHODS:
        return [f"key 'clustering': {_quote(method)} is Kura's own method: set backend = 'kura' (the reference "
                f"pipeline offers {', '.join(METHODS)})"]
    else:
        allowed = reference_clustering_params(method)
        owner = f"clustering '{method}'"
    unknown = sorted(set(params) - set(allowed))
    if unknown:
        return [f"key 'clustering_params': {', '.join(repr(k) for k in unknown)} not taken by {owner}; "
                f"allowed keys: {', '.join(allowed)}"]
    if backend == "kura":
        return []

    try:  # building the method checks the values (no library is imported until it fits)
        METHODS[method](**params)
    except (KuraPerfError, TypeError, ValueError) as exc:
        return [f"key 'clustering_params' {params!r} for {owner}: {exc}"]
    return []


def value_problems(profile) -> list[str]:
    """Every problem with the profile's values, each naming key, value and what is allowed."""
    problems = [p for key in ("summary_model", "naming_model")
                if (p := _llm_problem(key, getattr(profile, key))) is not None]
    problems += _checkpoint_problems(profile)
    problems += _embedding_problems(profile.embedding_model, profile.embedding_dimension)
    problems += _clustering_problems(profile.backend, profile.clustering, dict(profile.clustering_params))
    return problems
