"""What kind of failure ended a stage: memory exhaustion (a breaking point), an interrupt, or other.

Under an OS memory cap (`ulimit -v`, a cgroup) an allocation fails in many guises: MemoryError from
numpy or Python, an ImportError when a shared library cannot be mapped, DuckDB's OutOfMemoryException,
torch's "DefaultCPUAllocator: can't allocate memory", OSError ENOMEM. They all mean the same thing
for a benchmark: this is where the pipeline breaks for lack of memory, so they are recorded as a
breaking point with a clear message, not as an incidental failure with a traceback.
"""

from __future__ import annotations

import errno
import resource

_MEMORY_TEXT = ("cannot allocate memory", "failed to map segment", "out of memory", "can't allocate memory",
                "unable to allocate", "std::bad_alloc", "mmap failed", "memory allocation failed",
                "not enough memory")
# BaseExceptions that stop a stage from outside: Ctrl-C, Dagster's interrupt (it converts SIGINT /
# a termination request into this; matched by name so the core imports no Dagster), SystemExit.
INTERRUPT_NAMES = ("KeyboardInterrupt", "DagsterExecutionInterruptedError", "SystemExit")


def _chain(error: BaseException):
    seen = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        yield error
        error = error.__cause__ or error.__context__


def is_memory_exhaustion(error: BaseException) -> bool:
    for exc in _chain(error):
        if isinstance(exc, MemoryError) or type(exc).__name__ == "OutOfMemoryException":
            return True
        if isinstance(exc, OSError) and exc.errno == errno.ENOMEM:
            return True
        if isinstance(exc, (ImportError, OSError, RuntimeError)) or "duckdb" in type(exc).__module__:
            text = str(exc).lower()
            if any(marker in text for marker in _MEMORY_TEXT):
                return True
    return False


def is_interrupt(error: BaseException) -> bool:
    return any(type(exc).__name__ in INTERRUPT_NAMES for exc in _chain(error))


def memory_cap_note() -> str:
    """' under an address-space cap of N MB (ulimit -v)' when one is set, else ''."""
    soft, _ = resource.getrlimit(resource.RLIMIT_AS)
    if soft == resource.RLIM_INFINITY:
        return ""
    return f" under an address-space cap of {soft / 2**20:.0f} MB (ulimit -v {soft // 1024})"


def memory_reason(error: BaseException) -> str:
    first = str(error).strip().splitlines()[0] if str(error).strip() else ""
    return f"out of memory{memory_cap_note()}: allocation failed ({type(error).__name__}: {first[:300]})"
