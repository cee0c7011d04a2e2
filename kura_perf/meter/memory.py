"""Resident memory of this process: current, and a peak that can be reset per stage.

On Linux the kernel keeps the high-water mark (VmHWM) and lets a process reset it by writing "5" to
/proc/self/clear_refs, so a stage's true peak is read without sampling gaps. Elsewhere we fall back
to the sampler's maximum.
"""

from __future__ import annotations

import os
import re

import psutil

_STATUS = "/proc/self/status"
_HWM = re.compile(r"VmHWM:\s+(\d+) kB")
_RSS = re.compile(r"VmRSS:\s+(\d+) kB")
_VMSIZE = re.compile(r"VmSize:\s+(\d+) kB")
_PROCESS = psutil.Process()


def rss_mb() -> float:
    try:
        with open(_STATUS) as f:
            return int(_RSS.search(f.read()).group(1)) / 1024
    except (OSError, AttributeError):
        return _PROCESS.memory_info().rss / 2**20


def virtual_size_bytes() -> int:
    """This process's mapped address space (VmSize): what an RLIMIT_AS cap (ulimit -v) is checked against."""
    try:
        with open(_STATUS) as f:
            return int(_VMSIZE.search(f.read()).group(1)) * 1024
    except (OSError, AttributeError):
        return _PROCESS.memory_info().vms


def reset_peak() -> bool:
    """Reset the kernel's high-water mark to the current RSS. False where that is not possible."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return read_peak_mb() is not None
    except OSError:
        return False


def read_peak_mb() -> float | None:
    try:
        with open(_STATUS) as f:
            match = _HWM.search(f.read())
    except OSError:
        return None
    return int(match.group(1)) / 1024 if match else None


def total_ram_mb() -> float:
    return psutil.virtual_memory().total / 2**20


def pid() -> int:
    return os.getpid()
