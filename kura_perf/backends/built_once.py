"""Models built once per backend: one client per model per run, one weights load per process."""

from __future__ import annotations

from typing import Callable, TypeVar

T = TypeVar("T")


class BuiltOnce:
    def __init__(self) -> None:
        self._cache: dict[str, object] = {}

    def _once(self, key: str, build: Callable[[], T]) -> T:
        if key not in self._cache:
            self._cache[key] = build()
        return self._cache[key]  # type: ignore[return-value]

    def built(self) -> list:
        return list(self._cache.values())
