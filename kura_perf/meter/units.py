"""The meter's memory unit, and decimal units for everything shown.

The meter records memory in MiB (bytes / 2**20: StageRecord.peak_rss_mb, rss_start_mb, read from /proc
in kB) and the host's RAM in GiB (host_ram_gb). Everything shown (report, checks, CLI) is decimal:
1 MB = 10**6 bytes, 1 GB = 10**9 bytes, what `du --si` prints and what the proposal's §1.3/§3.2 figures
mean. Converting here, once, keeps a 1024-based figure from ever appearing under a decimal label.
"""

from __future__ import annotations

MIB = 2**20
GIB = 2**30
KB = 10**3
MB = 10**6
GB = 10**9


def mib_to_mb(mib: float) -> float:
    """MiB as the meter records memory, in decimal MB."""
    return float(mib) * MIB / MB


def mib_to_gb(mib: float) -> float:
    """MiB as the meter records memory, in decimal GB."""
    return float(mib) * MIB / GB
