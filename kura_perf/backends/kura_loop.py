"""Run Kura's async stage functions from synchronous code, on one event loop per backend.

Why one long-lived loop in a daemon thread, not asyncio.run per stage:
- Kura's models hold openai/httpx clients (MetaClusterModel and OpenAIEmbeddingModel create theirs
  in __init__); a client is bound to the loop it first used, and short-lived clients collected by the
  garbage collector on another thread hang or break requests. One loop for the backend's life keeps
  every client on the loop that owns its connections; after each call we collect garbage *on that
  loop*, so the clients Kura creates per call (SummaryModel, ClusterDescriptionModel) close there.
- Time limits. The meter's guard raises an async exception in the thread running the stage; a
  thread blocked inside a running event loop or a C call would not see it. Here the stage's thread
  only polls a future, so the guard's exception lands within POLL_S. We also enforce the time limit
  ourselves (Kura's meta-cluster loop has no iteration cap) and cancel Kura's task either way.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import gc
import threading
import time
from typing import Any, Coroutine, TypeVar

from kura_perf.errors import BreakingPoint

T = TypeVar("T")

POLL_S = 0.1  # how long a guard's interrupt may wait to be delivered
CANCEL_GRACE_S = 5.0  # how long we wait for Kura's task to unwind after a cancel


class KuraLoop:
    def __init__(self, name: str = "kura-loop"):
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name=name, daemon=True)
        self._thread.start()

    def run(self, coro: Coroutine[Any, Any, T], stage: str, time_limit_s: float | None = None) -> T:
        """Result of `coro` run on the loop; BreakingPoint past `time_limit_s`; any interrupt cancels it."""
        future = asyncio.run_coroutine_threadsafe(_then_collect(coro), self.loop)
        deadline = time.monotonic() + time_limit_s if time_limit_s else None
        try:
            while True:
                try:
                    return future.result(timeout=POLL_S)
                except concurrent.futures.TimeoutError:
                    if deadline is not None and time.monotonic() > deadline:
                        raise BreakingPoint(stage, f"time limit {time_limit_s:.0f} s exceeded inside Kura") from None
        except BaseException:
            self._cancel(future)
            raise

    def _cancel(self, future: concurrent.futures.Future) -> None:
        """Cancel Kura's task and give it a moment to unwind (it cannot if the loop is in CPU-bound code)."""
        future.cancel()
        try:
            asyncio.run_coroutine_threadsafe(asyncio.sleep(0), self.loop).result(timeout=CANCEL_GRACE_S)
        except BaseException:  # noqa: BLE001 - the loop is busy; the daemon thread finishes on its own
            pass

    def close(self, clients: list[Any] = ()) -> None:
        """Close the clients we know of, collect the ones we do not, on the loop; then stop it."""
        if self.loop.is_closed():
            return

        async def shutdown() -> None:
            for client in clients:
                close = getattr(client, "close", None)  # AsyncOpenAI.close is a coroutine
                if close is not None:
                    try:
                        await close()
                    except Exception:  # noqa: BLE001 - already closed or never opened
                        pass
            gc.collect()
            await asyncio.sleep(0.05)  # let the aclose tasks that collected clients scheduled run

        try:
            asyncio.run_coroutine_threadsafe(shutdown(), self.loop).result(timeout=CANCEL_GRACE_S)
        except BaseException:  # noqa: BLE001 - a busy or broken loop must not fail the run's cleanup
            pass
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(timeout=CANCEL_GRACE_S)
        if not self._thread.is_alive():
            self.loop.close()


async def _then_collect(coro: Coroutine[Any, Any, T]) -> T:
    try:
        return await coro
    finally:
        gc.collect()  # clients Kura made for this call die here, on their own loop
        await asyncio.sleep(0)
