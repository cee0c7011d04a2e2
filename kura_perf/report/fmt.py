"""Human units for the report: one place, so every table and figure says "2.4 h" and "1.5 GB" alike."""

from __future__ import annotations

import numpy as np
import pandas as pd

from kura_perf.meter.units import GIB, MIB, mib_to_gb, mib_to_mb  # noqa: F401 -- re-exported: fmt.MIB, fmt.mib_to_mb

MISSING = "—"


def is_missing(value) -> bool:
    """None, NaN, pd.NA or NaT: the store's columns are nullable, so any of them can come back."""
    if value is None:
        return True
    try:
        result = pd.isna(value)
    except (TypeError, ValueError):
        return False
    return bool(result) if isinstance(result, (bool, np.bool_)) else False


def conversations(n) -> str:
    """100, 1K, 10K, 1M: the way the proposal names scales."""
    if is_missing(n):
        return MISSING
    n = int(n)
    for div, suffix in ((1_000_000, "M"), (1_000, "K")):
        if n >= div:
            value = n / div
            return f"{value:.0f}{suffix}" if value == int(value) else f"{value:.1f}{suffix}"
    return str(n)


def seconds(s) -> str:
    if is_missing(s):
        return MISSING
    s = float(s)
    if s < 1:
        return f"{s:.2f} s"
    if s < 120:
        return f"{s:.1f} s"
    if s < 2 * 3600:
        return f"{s / 60:.1f} min"
    if s < 2 * 86400:
        return f"{s / 3600:.1f} h"
    return f"{s / 86400:.1f} d"


def scaled_factors(rows) -> list[float]:
    """The simulator speed factors other than 1 among these records (a frame or dicts with
    `sim_speed_factor`): times measured against a simulator running N times faster than the modelled
    API. Null (no simulator) and 1 (the model's published speed) are not scaled. Older frames without
    the column have none."""
    if rows is None:
        return []
    if isinstance(rows, pd.DataFrame):
        values = rows["sim_speed_factor"].tolist() if "sim_speed_factor" in rows else []
    else:
        values = [getattr(r, "sim_speed_factor", None) if not isinstance(r, dict) else r.get("sim_speed_factor")
                  for r in rows]
    return sorted({float(v) for v in values if not is_missing(v) and float(v) != 1.0})


def scaled_label(factors) -> str:
    """'scaled x10, not a prediction' ('x10/x100' when several): what a time measured against a sped-up
    simulator is called wherever it is shown, so it is never read as what a real endpoint would take."""
    factors = [factors] if isinstance(factors, (int, float)) else list(factors)
    return "scaled " + "/".join(f"x{f:g}" for f in factors) + ", not a prediction"


def seconds_scaled(s, rows) -> str:
    """`seconds(s)`, followed by the scaled label when any of the rows it comes from was scaled."""
    factors = scaled_factors(rows)
    text = seconds(s)
    return f"{text} ({scaled_label(factors)})" if factors and text != MISSING else text


# One convention for every size the report prints: decimal units, 1 kB = 1,000 bytes, 1 MB = 10⁶ bytes,
# 1 GB = 10⁹ bytes (what `du --si` prints and what the proposal's §1.3/§3.2 figures mean). The meter
# records memory in MiB (bytes / 2**20, StageRecord.peak_rss_mb, rss_start_mb) and the host's RAM in GiB
# (host_ram_gb): those are converted to bytes first, never shown under a decimal label as they are.
# The page's legend says so (templates/parts.html.j2).
_DECIMAL = (("TB", 10**12), ("GB", 10**9), ("MB", 10**6), ("kB", 10**3))


def megabytes(mib) -> str:
    """Memory recorded in MiB (peak_rss_mb, rss_start_mb, growth), shown in decimal MB/GB/TB."""
    if is_missing(mib):
        return MISSING
    b = float(mib) * MIB
    if abs(b) < 10**9:
        return f"{b / 10**6:.0f} MB"
    if abs(b) < 10**12:
        return f"{b / 10**9:.1f} GB"
    return f"{b / 10**12:.1f} TB"


def kilobytes(kb) -> str:
    """Decimal kB (1,000 bytes), e.g. bytes written per conversation."""
    if is_missing(kb):
        return MISSING
    kb = float(kb)
    if kb < 0.1:
        return f"{kb * 1000:.0f} B" if kb * 1000 >= 10 else f"{kb * 1000:.1f} B"
    return f"{kb:.2f} kB" if kb < 10 else f"{kb:.1f} kB"


def nbytes(b) -> str:
    """Bytes in decimal units, the label matching the math (kB = 1000 B, MB = 10^6 B, ...): 94.1e6 bytes
    is "94.1 MB" (1024-based math under these labels printed it as "89.8 MB")."""
    if is_missing(b):
        return MISSING
    b = float(b)
    for unit, div in _DECIMAL:
        if b >= div or (div > 1000 and round(b / div, 1) >= 1):  # 999,960 B is "1.0 MB", not "1000.0 kB"
            return f"{b / div:.1f} {unit}"
    return f"{b:.0f} B"


def gigabytes(gb) -> str:
    """Decimal GB (a recommendation's RAM or disk), TB from 1,000 GB."""
    if is_missing(gb):
        return MISSING
    gb = float(gb)
    return f"{gb / 1000:.0f} TB" if gb >= 1000 else f"{gb:.0f} GB"


def memory_gb(gb) -> str:
    """Memory already in decimal GB (the advisor's peak RAM), shown like every other memory figure."""
    return MISSING if is_missing(gb) else megabytes(float(gb) * 10**9 / MIB)


def gibibytes_as_gb(gib) -> str:
    """A size recorded in GiB (host_ram_gb), in decimal GB."""
    if is_missing(gib):
        return MISSING
    return f"{float(gib) * GIB / 10**9:.0f} GB ({float(gib):g} GiB)"  # machines are sold by the GiB


def usd(x) -> str:
    if is_missing(x):
        return MISSING
    x = float(x)
    if x == 0:
        return "$0"
    if x < 0.01:
        return f"${x:.4f}"
    if x < 100:
        return f"${x:.2f}"
    return f"${x:,.0f}"


def number(x, digits: int = 2) -> str:
    if is_missing(x):
        return MISSING
    return f"{float(x):.{digits}f}"


def integer(x) -> str:
    if is_missing(x):
        return MISSING
    return f"{int(x):,}"


def percent(x) -> str:
    if is_missing(x):
        return MISSING
    return f"{100 * float(x):.1f}%"


def exponent(b) -> str:
    return MISSING if is_missing(b) else f"n^{float(b):.2f}"
