"""Ctrl-C for this process only, not for the helper processes it starts.

A terminal sends SIGINT to every process of its foreground group. During a Dagster run those include
Dagster's compute-log helpers (a `tail` and a Python watcher), which would print their own
KeyboardInterrupt tracebacks over our one-line message. A blocked signal stays blocked across fork
and exec, so while `own_interrupts()` is active the main thread blocks SIGINT (its children inherit
that) and a small thread started before the block, with SIGINT still open, receives it instead:
CPython runs the Python-level handler (KeyboardInterrupt, or Dagster's interrupt) in the main thread
as usual. The helpers are then stopped by Dagster's own clean-up.
"""

from __future__ import annotations

import signal
import threading
from contextlib import contextmanager


@contextmanager
def own_interrupts():
    if not hasattr(signal, "pthread_sigmask") or threading.current_thread() is not threading.main_thread():
        yield
        return
    receiver = threading.Thread(target=threading.Event().wait, name="sigint-receiver", daemon=True)
    receiver.start()
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)
