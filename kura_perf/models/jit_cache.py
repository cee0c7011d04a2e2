"""numba's on-disk cache under the data root, so UMAP compiles once per machine, not once per process.

UMAP (umap-learn, pynndescent) is numba code: a new process compiles it on first use (15-40 s here,
most of a 1K projections stage). numba can keep compiled machine code on disk, but it is a
third-party library configured only by the environment: NUMBA_CACHE_DIR must be set before numba is
imported. This module decides the folder (`configure`, called by the runner before a stage runs; an
explicit NUMBA_CACHE_DIR set by the user wins) and kura_perf/settings/third_party_env.py sets it. pynndescent marks its functions cache=True;
most of umap-learn's do not, so `configure` also switches caching on for the numba functions of the
modules in CACHED_MODULES (numba's own Dispatcher.enable_caching, what cache=True does).

`JitWatch` tells whether a stage compiled anything: it counts, per numba function of those modules,
compiled signatures and cache hits before and after, so a record can say "compiled" (fresh machine
code, time inside the stage; numba's own compile timers give compile_s) or "from cache". With a warm
cache two tiny umap helpers (utils.tau_rand, tau_rand_int) still compile in every process: numba does
not serve them from the cache, so jit_compiled is true whenever anything compiled, and compile_s says
how much it cost.
"""

from __future__ import annotations

import importlib
import os
import sys
from dataclasses import dataclass
from pathlib import Path

from kura_perf.settings.third_party_env import NUMBA_CACHE_ENV, set_numba_cache_dir

CACHED_MODULES = ("umap.umap_", "umap.layouts", "umap.spectral", "umap.utils", "umap.distances",
                  "umap.sparse")
WATCHED_PREFIXES = ("umap", "pynndescent", "hdbscan")


def cache_dir(root: Path) -> Path:
    return Path(root) / "cache" / "numba"


_set_by_us: str | None = None  # the value configure() last wrote, to tell it from a user's own setting


def configure(root: Path) -> Path:
    """Point numba's cache under `root` (unless the user set NUMBA_CACHE_DIR) and return the folder used.

    Call before umap/pynndescent are imported: functions already set up for caching keep the folder
    they were given. The runner calls it before every stage.
    """
    global _set_by_us
    current = os.environ.get(NUMBA_CACHE_ENV)
    user_set = bool(current) and current != _set_by_us
    chosen = Path(current) if user_set else cache_dir(root).resolve()
    chosen.mkdir(parents=True, exist_ok=True)
    if not user_set:
        _set_by_us = str(chosen)
        set_numba_cache_dir(_set_by_us)  # numba reads it at import (numba.core.config)
    if "numba" in sys.modules:  # already imported: numba consults its config object when it sets up a cache
        from numba.core import config

        config.CACHE_DIR = str(chosen)
    return chosen


def enable_umap_caching() -> int:
    """Switch on disk caching for umap-learn's numba functions; returns how many were switched on."""
    from numba.core.registry import CPUDispatcher

    switched = 0
    for name in CACHED_MODULES:
        try:
            module = importlib.import_module(name)
        except ImportError:
            continue
        for value in vars(module).values():
            if isinstance(value, CPUDispatcher) and value._cache.__class__.__name__ == "NullCache":
                try:
                    value.enable_caching()
                    switched += 1
                except Exception:  # noqa: BLE001 - a function numba cannot cache just stays uncached
                    pass
    return switched


def _dispatchers() -> dict[int, object]:
    if "numba" not in sys.modules:
        return {}
    from numba.core.registry import CPUDispatcher

    found = {}
    for name, module in list(sys.modules.items()):
        if module is None or not name.startswith(WATCHED_PREFIXES):
            continue
        for value in list(vars(module).values()):
            if isinstance(value, CPUDispatcher):
                found[id(value)] = value
    return found


def _counts(dispatcher) -> tuple[int, int]:
    hits = sum(dispatcher._cache_hits.values()) if hasattr(dispatcher, "_cache_hits") else 0
    return len(dispatcher.overloads), hits


def _compile_seconds(dispatcher, newest: int) -> float:
    """numba's own compile timers (compiler lock held) of the dispatcher's `newest` overloads."""
    total = 0.0
    for result in list(dispatcher.overloads.values())[-newest:] if newest > 0 else []:
        timers = (getattr(result, "metadata", None) or {}).get("timers") or {}
        total += float(timers.get("compiler_lock", 0.0))
    return total


@dataclass
class JitReport:
    compiled: int  # signatures compiled to fresh machine code during the stage
    from_cache: int  # signatures loaded from the disk cache during the stage
    cache_dir: str | None
    cache_files_added: int
    compile_s: float = 0.0  # numba's compile timers for the fresh ones (contended boxes inflate it)

    @property
    def jit_compiled(self) -> bool:
        return self.compiled > 0

    def as_dict(self) -> dict:
        return {"compiled": self.compiled, "from_cache": self.from_cache, "compile_s": round(self.compile_s, 3),
                "cache_dir": self.cache_dir, "cache_files_added": self.cache_files_added}


class JitWatch:
    """Snapshot numba's compile counters around a block (cheap: a scan of a few hundred module attributes)."""

    def __init__(self) -> None:
        self._before = {key: _counts(d) for key, d in _dispatchers().items()}
        self._cache_dir = os.environ.get(NUMBA_CACHE_ENV)
        self._files_before = self._cache_files()

    def _cache_files(self) -> int:
        if not self._cache_dir or not Path(self._cache_dir).is_dir():
            return 0
        return sum(1 for _ in Path(self._cache_dir).rglob("*.nbi"))

    def report(self) -> JitReport:
        compiled = from_cache = 0
        seconds = 0.0
        for key, dispatcher in _dispatchers().items():
            overloads, hits = _counts(dispatcher)
            old_overloads, old_hits = self._before.get(key, (0, 0))
            new, loaded = overloads - old_overloads, hits - old_hits
            fresh = max(new - max(loaded, 0), 0)
            from_cache += max(loaded, 0)
            compiled += fresh
            if fresh:
                seconds += _compile_seconds(dispatcher, fresh)
        return JitReport(compiled, from_cache, self._cache_dir, max(self._cache_files() - self._files_before, 0),
                         seconds)
