"""numba's on-disk cache under the data root, so UMAP compiles once per machine, not once per process.

UMAP (umap-learn, pynndescent) is numba code: a new process compiles it on first use (15-40 s here,
most of a 1K projections stage). numba can keep compiled machine code on disk, but it is a
third-party library configured only by the environment: NUMBA_CACHE_DIR must be set before numba is
imported. This module decides the folder (`configure`, called by the runner before a stage runs; an
explicit NUMBA_CACHE_DIR set by the user wins) and kura_perf/settings/third_party_env.py sets it. pynndescent marks its functions cache=True;
most of umap-learn's do not, so `configure` also switches caching on for the numba functions of the
modules in CACHED_MODULES (numba's own Dispatcher.enable_caching, what cache=True does).

Functions umap-learn compiles eagerly (an explicit signature: utils.tau_rand, tau_rand_int) compile
while `umap` is imported, before `enable_umap_caching` can reach them, so they used to compile in every
process even with a warm cache (issue 20: jit_compiled true at every scale). `import_umap` imports
umap-learn with caching on from the start (numba.njit/jit default to cache=True for that import only).

`JitWatch` tells whether a block compiled anything and how long compiling took. The seconds come from
`CompileClock`, a listener on numba's "numba:compile" events that counts only the outermost compile:
numba's per-function compiler-lock timers (what compile_s was summed from before) each include the
nested compiles of the functions they call, and the listener numba installs for them also hears other
threads' events, so their sum double-counted and came out above the stage's own wall (issue 20: 74 s
of compile in a 43 s stage). The clock's seconds are wall time during which numba was compiling, so
they are part of, and never more than, the wall of the block they were taken in. Loading from the disk
cache is not compiling: it shows as from_cache, not as compile seconds.
"""

from __future__ import annotations

import importlib
import os
import sys
import threading
import time
from contextlib import contextmanager
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


@contextmanager
def _cache_by_default():
    """numba.njit / numba.jit with cache=True unless the caller says otherwise, for one import: the
    functions umap-learn compiles at import (explicit signatures) are then saved to, and next time
    loaded from, the disk cache."""
    import numba

    originals = {"njit": numba.njit, "jit": numba.jit}

    def caching(decorator):
        def decorate(*args, **kwargs):
            kwargs.setdefault("cache", True)
            return decorator(*args, **kwargs)
        return decorate

    for name, decorator in originals.items():
        setattr(numba, name, caching(decorator))
    try:
        yield
    finally:
        for name, decorator in originals.items():
            setattr(numba, name, decorator)


_startup_s = 0.0  # wall seconds this process spent importing numba and umap-learn, compiles excluded


def import_umap() -> None:
    """Import umap-learn (and pynndescent) with numba's disk cache on from the first function, and start
    the compile clock first, so compiles at import are timed too. Call before any `import umap`; a
    no-op for the import when umap is already imported (its eager functions then stay uncached).

    The first import in a process is start-up, not the stage's work: its seconds (without the compiles
    during it, which the clock has) add to `_startup_s`, which JitWatch reports as startup_s."""
    global _startup_s
    if "umap" in sys.modules:
        compile_clock()
        enable_umap_caching()
        return
    started = time.perf_counter()
    clock = compile_clock()
    compiled_before = clock.reading()[0]
    with _cache_by_default():
        importlib.import_module("umap")
    enable_umap_caching()
    compiling = clock.reading()[0] - compiled_before
    _startup_s += max(time.perf_counter() - started - compiling, 0.0)


class CompileClock:
    """Wall seconds during which numba compiled fresh code, and how many compiles: the union of the
    "numba:compile" events (nested compiles, of callees, count once, inside their caller's; compiles
    hold numba's global lock, so other threads' never overlap)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._depth = 0
        self._since = 0.0
        self._seconds = 0.0
        self.compiles = 0

    def on_start(self, event) -> None:
        with self._lock:
            self.compiles += 1
            if self._depth == 0:
                self._since = time.perf_counter()
            self._depth += 1

    def on_end(self, event) -> None:
        with self._lock:
            self._depth = max(self._depth - 1, 0)
            if self._depth == 0:
                self._seconds += time.perf_counter() - self._since

    def reading(self) -> tuple[float, int]:
        """(seconds so far, compiles so far); a compile in progress counts up to now."""
        with self._lock:
            running = time.perf_counter() - self._since if self._depth else 0.0
            return self._seconds + running, self.compiles


_clock: CompileClock | None = None


def compile_clock(import_numba: bool = True) -> CompileClock | None:
    """The process's compile clock, registered with numba once (importing numba unless import_numba is
    False; then None while numba is not imported)."""
    global _clock
    if _clock is None and (import_numba or "numba" in sys.modules):
        from numba.core import event

        class _Listener(event.Listener):  # numba wants its own Listener type; defined here to import numba late
            def __init__(self, clock: CompileClock) -> None:
                self.clock = clock

            def on_start(self, ev) -> None:
                self.clock.on_start(ev)

            def on_end(self, ev) -> None:
                self.clock.on_end(ev)

        _clock = CompileClock()
        event.register("numba:compile", _Listener(_clock))
    return _clock


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


@dataclass
class JitReport:
    compiled: int  # signatures compiled to fresh machine code during the stage
    from_cache: int  # signatures loaded from the disk cache during the stage
    cache_dir: str | None
    cache_files_added: int
    compile_s: float = 0.0  # wall seconds numba spent compiling inside the block (CompileClock)
    startup_s: float = 0.0  # wall seconds importing numba and umap-learn for this process (import_umap)

    @property
    def jit_compiled(self) -> bool:
        return self.compiled > 0

    def as_dict(self) -> dict:
        return {"compiled": self.compiled, "from_cache": self.from_cache, "compile_s": round(self.compile_s, 3),
                "startup_s": round(self.startup_s, 3),
                "cache_dir": self.cache_dir, "cache_files_added": self.cache_files_added}


class JitWatch:
    """numba's compiles and cache loads during a block: the compile clock's seconds and count, and
    the watched functions' cache hits (cheap: a scan of a few hundred module attributes).

    When numba is imported during the block (the clock starts with `import_umap`), compiles before the
    clock started are counted from the functions' signatures, with no seconds."""

    def __init__(self) -> None:
        self._before = {key: _counts(d) for key, d in _dispatchers().items()}
        self._clock_before = (clock := compile_clock(import_numba=False)) and clock.reading()
        self._startup_before = _startup_s
        self._cache_dir = os.environ.get(NUMBA_CACHE_ENV)
        self._files_before = self._cache_files()

    def _cache_files(self) -> int:
        if not self._cache_dir or not Path(self._cache_dir).is_dir():
            return 0
        return sum(1 for _ in Path(self._cache_dir).rglob("*.nbi"))

    def report(self) -> JitReport:
        fresh_signatures = from_cache = 0
        for key, dispatcher in _dispatchers().items():
            overloads, hits = _counts(dispatcher)
            old_overloads, old_hits = self._before.get(key, (0, 0))
            loaded = max(hits - old_hits, 0)
            from_cache += loaded
            fresh_signatures += max(overloads - old_overloads - loaded, 0)
        clock = compile_clock(import_numba=False)
        seconds, compiled = 0.0, fresh_signatures
        if clock is not None:
            now_s, now_n = clock.reading()
            start_s, start_n = self._clock_before or (0.0, 0)
            seconds = max(now_s - start_s, 0.0)
            compiled = now_n - start_n if self._clock_before else max(now_n - start_n, fresh_signatures)
        return JitReport(compiled, from_cache, self._cache_dir, max(self._cache_files() - self._files_before, 0),
                         seconds, max(_startup_s - self._startup_before, 0.0))
