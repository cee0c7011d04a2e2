"""Ctrl-C for this process only, not for the helper processes it starts.

A terminal sends SIGINT to every process of its foreground group. During a Dagster run those include
Dagster's compute-log helpers (a `tail` and a Python watcher), which would print their own
KeyboardInterrupt tracebacks over our one-line message. A blocked signal stays blocked across fork
and exec, so while `own_interrupts()` is active every child process is created with SIGINT blocked:
it never sees a Ctrl-C, and Dagster's own clean-up stops it.

Only the creation of a child is done with SIGINT blocked, never the process's own work. (Blocking it
in the main thread for the whole run, as this guard once did, left a main thread asleep in a system
call - a read from a FIFO, a socket, a pipe - deaf to Ctrl-C: the signal went to another thread, and
a signal only interrupts a system call of the thread it is delivered to.) The main thread keeps
SIGINT open, so Linux delivers a Ctrl-C to it, the blocking call returns EINTR and CPython runs the
Python-level handler (KeyboardInterrupt, or Dagster's interrupt) right there.

Every way CPython creates a process on POSIX goes through one of three doors, and each is covered
while a guard is active: `_posixsubprocess.fork_exec` (subprocess - which keeps its own reference
to it -, multiprocessing's spawn and forkserver, joblib's loky workers), `os.posix_spawn[p]`
(subprocess's other path) and `os.fork` (multiprocessing's fork, os.forkpty; through
os.register_at_fork). A SIGINT that arrives during the few milliseconds of a creation stays pending
and is delivered when the creating thread unblocks it.
"""

from __future__ import annotations

import os
import signal
import subprocess
import threading
from contextlib import contextmanager

_lock = threading.Lock()
_active = 0  # guards entered and not yet left (a guard may be nested)
_originals: list[tuple[object, str, object]] = []  # (module, name, function) replaced while active
_fork_masks = threading.local()
_fork_hooks_registered = False


@contextmanager
def sigint_blocked_here():
    """SIGINT blocked in the calling thread only, for the duration (a child created now inherits it)."""
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


def _quiet_child(create):
    """`create` (a process-creating function) run with SIGINT blocked in this thread."""

    def create_with_sigint_blocked(*args, **kwargs):
        with sigint_blocked_here():
            return create(*args, **kwargs)

    create_with_sigint_blocked.__wrapped__ = create
    return create_with_sigint_blocked


def _spawn_doors() -> list[tuple[object, str]]:
    import _posixsubprocess

    doors = [(_posixsubprocess, "fork_exec"), (os, "posix_spawn"), (os, "posix_spawnp")]
    if getattr(subprocess, "_fork_exec", None) is not None:  # subprocess imported fork_exec by name
        doors.append((subprocess, "_fork_exec"))
    return [(module, name) for module, name in doors if callable(getattr(module, name, None))]


def _before_fork() -> None:
    if _active:
        _fork_masks.previous = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})


def _after_fork_in_parent() -> None:
    previous = getattr(_fork_masks, "previous", None)
    if previous is not None:
        _fork_masks.previous = None
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


def _after_fork_in_child() -> None:
    _fork_masks.previous = None  # the child keeps SIGINT blocked, as a spawned one does


def _enter() -> None:
    global _active, _fork_hooks_registered
    with _lock:
        _active += 1
        if _active > 1:
            return
        if not _fork_hooks_registered:  # registered once per process; inert while no guard is active
            os.register_at_fork(before=_before_fork, after_in_parent=_after_fork_in_parent,
                                after_in_child=_after_fork_in_child)
            _fork_hooks_registered = True
        for module, name in _spawn_doors():
            original = getattr(module, name)
            _originals.append((module, name, original))
            setattr(module, name, _quiet_child(original))


def _leave() -> None:
    global _active
    with _lock:
        _active -= 1
        if _active:
            return
        while _originals:
            module, name, original = _originals.pop()
            setattr(module, name, original)


@contextmanager
def own_interrupts():
    """While active, processes this one starts do not receive Ctrl-C; this process still does, even in
    a blocking system call."""
    if not hasattr(signal, "pthread_sigmask") or threading.current_thread() is not threading.main_thread():
        yield
        return
    _enter()
    try:
        yield
    finally:
        _leave()
