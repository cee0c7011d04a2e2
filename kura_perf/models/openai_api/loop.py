"""A private event loop per model, in a daemon thread.

Why not `asyncio.run` per batch: an AsyncOpenAI/httpx client is bound to the loop it first used;
reusing it from a new loop fails (openai-python #1059), and short-lived clients left to the garbage
collector have their pooled connections closed from whichever thread/loop collects them
(openai-python #2440), which hangs or breaks requests. A long-lived loop keeps one pool alive for
the model's lifetime and also works when the caller already runs inside an event loop.
"""

from __future__ import annotations

import asyncio
import threading
from typing import Any, Coroutine, TypeVar

import openai

T = TypeVar("T")


class LoopThread:
    """An event loop running forever in a daemon thread; coroutines are submitted from any thread."""

    def __init__(self, name: str):
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name=name, daemon=True)
        self.thread.start()

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        future = asyncio.run_coroutine_threadsafe(coro, self.loop)
        try:
            return future.result()
        except BaseException:
            future.cancel()
            raise

    def stop(self) -> None:
        if self.loop.is_closed():
            return
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=10)
        if not self.thread.is_alive():
            self.loop.close()


def shutdown(loop_thread: LoopThread, client: openai.AsyncOpenAI | None) -> None:
    if client is not None and not loop_thread.loop.is_closed() and loop_thread.thread.is_alive():
        try:
            loop_thread.run(client.close())
        except Exception:
            pass
    loop_thread.stop()

