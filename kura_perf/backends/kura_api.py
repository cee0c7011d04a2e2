"""Where the installed Kura keeps its procedural API: found by looking, not by version number.

Why: every 0.5.x release moved the pipeline functions. 0.5.4 has each in its own module; 0.5.1 and
0.5.2 have summarise / embed / cluster there but meta-clustering and projection only in kura/v1/kura.py;
0.5.0 has all four in kura/v1/kura.py, no embed_summaries (its ClusterModel embeds inside its own
cluster_summaries) and a base-clustering function that takes one `model=ClusterModel` instead of
0.5.4's embedding model, clustering method and description model. A table keyed by version would be
wrong for every checkout or commit between releases; looking where each function is works for all of them.

Each function is looked up on first use, in the newer home first: a module Kura does not have is
skipped, a module that fails to import for any other reason (a missing dependency, no OpenAI key) is
an error, named. Lookups are lazy so that a stage imports only what it calls (the spec tests' stand-in
Kura has kura.summarisation only). `describe()` is the one line saying which layout was found.
"""

from __future__ import annotations

import importlib
import inspect
from dataclasses import dataclass, field
from typing import Callable

from kura_perf.errors import StageError

# Each procedural function's possible homes, newest layout first.
HOMES: dict[str, tuple[str, ...]] = {
    "summarise_conversations": ("kura.summarisation", "kura.v1.kura"),
    "embed_summaries": ("kura.embedding",),
    "generate_base_clusters_from_conversation_summaries": ("kura.cluster", "kura.v1.kura"),
    "reduce_clusters_from_base_clusters": ("kura.meta_cluster", "kura.v1.kura"),
    "reduce_dimensionality_from_clusters": ("kura.dimensionality", "kura.v1.kura"),
}
SHORT = {"summarise_conversations": "summarise", "embed_summaries": "embed",
         "generate_base_clusters_from_conversation_summaries": "cluster",
         "reduce_clusters_from_base_clusters": "meta", "reduce_dimensionality_from_clusters": "project"}


def _module(name: str):
    """The module, or None when Kura has no such module (only that: any other ImportError is raised)."""
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as exc:
        if exc.name is not None and (name == exc.name or name.startswith(exc.name + ".")):
            return None
        raise


@dataclass
class KuraApi:
    """The installed Kura's procedural functions, each found where it lives."""

    _found: dict[str, tuple[str, Callable] | None] = field(default_factory=dict)

    def where(self, name: str) -> str | None:
        """The module holding `name`, or None when the installed Kura has it nowhere."""
        found = self._lookup(name)
        return found[0] if found else None

    def has(self, name: str) -> bool:
        return self._lookup(name) is not None

    def get(self, name: str) -> Callable:
        found = self._lookup(name)
        if found is None:
            raise StageError(f"the installed Kura has no {name} (looked in {', '.join(HOMES[name])})")
        return found[1]

    def _lookup(self, name: str) -> tuple[str, Callable] | None:
        if name not in self._found:
            self._found[name] = None
            for home in HOMES[name]:
                module = _module(home)
                function = getattr(module, name, None) if module is not None else None
                if callable(function):
                    self._found[name] = (home, function)
                    break
        return self._found[name]

    def clusters_take_model(self) -> bool:
        """True for Kura 0.5.0's base clustering, generate_...(summaries, *, model=ClusterModel): the
        embedding, clustering method and naming all live in that one model object. False for 0.5.1+,
        which takes embedding_model=, clustering_method= and clustering_model= (the description model)."""
        parameters = inspect.signature(self.get("generate_base_clusters_from_conversation_summaries")).parameters
        return "embedding_model" not in parameters and "model" in parameters

    def describe(self) -> str:
        """One line: where each function was found, e.g. 'Kura layout: summarise, cluster in kura.v1.kura;
        ...; no embed_summaries (embedding inside ClusterModel.cluster_summaries)'."""
        by_home: dict[str, list[str]] = {}
        missing = []
        for name in HOMES:
            home = self.where(name)
            if home is None:
                missing.append(name)
            else:
                by_home.setdefault(home, []).append(SHORT[name])
        parts = [f"{', '.join(names)} in {home}" for home, names in by_home.items()]
        if "embed_summaries" in missing:
            parts.append("no embed_summaries (embedding inside ClusterModel.cluster_summaries)")
            missing.remove("embed_summaries")
        parts += [f"no {name}" for name in missing]
        if self.has("generate_base_clusters_from_conversation_summaries") and self.clusters_take_model():
            parts.append("base clustering takes model=ClusterModel")
        return "Kura layout: " + "; ".join(parts)


__all__ = ["HOMES", "KuraApi"]
