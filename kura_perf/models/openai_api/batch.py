"""A batch of requests that succeeds or fails as one, without abandoning requests on the wire.

After the first failure no new attempt starts, but requests already sent are let finish, so the
counters still match the server's log; then the first failure is raised."""

from __future__ import annotations

import asyncio
from contextvars import ContextVar
from typing import Any, Coroutine, TypeVar

T = TypeVar("T")

BATCH_FAILED: ContextVar[asyncio.Event | None] = ContextVar("kura_perf_batch_failed", default=None)


class BatchAborted(Exception):
    """Another request of the same batch failed for good: start no new attempt."""


def raise_if_batch_failed() -> None:
    failed = BATCH_FAILED.get()
    if failed is not None and failed.is_set():
        raise BatchAborted


async def all_or_fail(coros: list[Coroutine[Any, Any, T]]) -> list[T]:
    """Run concurrently, results in order. After the first failure no new attempt starts, but
    requests already on the wire are let finish, so the counters still match the server's log;
    then the first failure is raised."""
    failed = asyncio.Event()
    failures: list[BaseException] = []

    def note(task: asyncio.Future) -> None:
        if not task.cancelled() and task.exception() is not None:
            if not isinstance(task.exception(), BatchAborted):
                failures.append(task.exception())
            failed.set()

    token = BATCH_FAILED.set(failed)
    try:
        tasks = [asyncio.ensure_future(c) for c in coros]
    finally:
        BATCH_FAILED.reset(token)
    for task in tasks:
        task.add_done_callback(note)
    results = await asyncio.gather(*tasks, return_exceptions=True)
    if failures:
        raise failures[0]
    return list(results)

