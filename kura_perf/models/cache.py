"""Where loaded models are kept: once per process, once per backend, and on disk once per machine.

Loading weights costs about a second and ~100 MB (MiniLM); a benchmark that reloaded them per batch,
per asset or per backend would measure the loader, not the model. So every model the package loads is
held here, keyed by what defines it: a kind (which loader) and the arguments that change the object
(the weights path; Kura's wrapper also its batch size). Two users asking with the same key get the same
object; a different key loads a different one.

Three lifetimes, one module:
- `shared(kind, key, load)`: one object per process (weights: SentenceTransformer, Kura's wrapper of it,
  the simulator's fixed projections). `keep` bounds a kind whose keys come from outside (the simulator
  derives a projection per model name a client sends), dropping the least recently used first.
- `BuiltOnce`: one object per backend instance (API clients, bound to the run's event loop and closed
  with it, so they must not outlive the backend).
- `derived_models_dir(root)`: models derived once per machine from shipped weights (the checked ONNX
  exports), <data root>/model_cache; RunSettings.model_cache (KURA_PERF_MODEL_CACHE, read at the edge)
  may share one folder between data roots (the test suite does, so it exports once per session).
"""

from __future__ import annotations

import os
import threading
from collections import Counter, OrderedDict
from pathlib import Path
from typing import Callable, Hashable, TypeVar

T = TypeVar("T")


_models: dict[str, OrderedDict] = {}  # kind -> key -> model, least recently used first
_loads: Counter = Counter()  # (kind, key) -> loads in this process
_loading: dict[tuple[str, Hashable], threading.Lock] = {}  # one loader per key at a time
_guard = threading.Lock()  # held for dictionary updates only, never while a model loads


def shared(kind: str, key: Hashable, load: Callable[[], T], *, keep: int | None = None) -> T:
    """The process's `kind` model for `key`, made by load() on first use: once, even when threads ask at
    the same moment (each key has its own lock, so a slow load does not hold up other models). A load
    that raises caches nothing; the next caller tries again."""
    with _guard:
        models = _models.setdefault(kind, OrderedDict())
        if key in models:
            models.move_to_end(key)
            return models[key]
        lock = _loading.setdefault((kind, key), threading.Lock())
    with lock:
        with _guard:
            if key in models:
                return models[key]
        try:
            model = load()
            with _guard:
                models[key] = model
                _loads[(kind, key)] += 1
                while keep is not None and len(models) > keep:
                    models.popitem(last=False)
            return model
        finally:
            with _guard:
                _loading.pop((kind, key), None)


def load_count(kind: str, key: Hashable) -> int:
    """How many times this process has loaded `kind` for `key` (1 when the cache works)."""
    with _guard:
        return _loads[(kind, key)]


class BuiltOnce:
    """Models built once per owner (a backend's model factory): one client per model per run."""

    def __init__(self) -> None:
        self._cache: dict[str, object] = {}

    def _once(self, key: str, build: Callable[[], T]) -> T:
        if key not in self._cache:
            self._cache[key] = build()
        return self._cache[key]  # type: ignore[return-value]

    def built(self) -> list:
        return list(self._cache.values())


def derived_models_dir(data_root: str | os.PathLike) -> Path:
    """Models derived once per machine from shipped weights, reused by every run: <data root>/model_cache.
    (KURA_PERF_MODEL_CACHE, read at the edge into RunSettings.model_cache, may name one for every data root.)"""
    return Path(data_root) / "model_cache"


def onnx_exports_dir(model_cache: str | os.PathLike) -> Path:
    """The checked ONNX exports inside a model cache folder (kura_perf/models/onnx_export.py)."""
    return Path(model_cache) / "onnx"
