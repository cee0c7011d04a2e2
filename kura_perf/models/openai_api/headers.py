"""Reading OpenAI's rate-limit answers: reset durations and the server's requested wait."""

from __future__ import annotations

import email.utils
import re
import time

import httpx

_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|h|m|s)")

def parse_reset(value: str | None) -> float | None:
    """OpenAI's reset durations ("1s", "6m0s", "250ms", "1h2m3.5s") or plain seconds, in seconds."""
    if not value:
        return None
    try:
        return float(value)
    except ValueError:
        pass
    unit_s = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001}
    parts = _DURATION_PART.findall(value)
    return sum(float(n) * unit_s[u] for n, u in parts) if parts else None


def retry_after_s(headers: httpx.Headers | dict | None) -> float | None:
    """The server's requested wait: retry-after-ms, else retry-after (seconds or an HTTP date)."""
    if not headers:
        return None
    ms = headers.get("retry-after-ms")
    if ms:
        try:
            return max(0.0, float(ms) / 1000.0)
        except ValueError:
            pass
    value = headers.get("retry-after")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
            return max(0.0, when.timestamp() - time.time())
        except (TypeError, ValueError):
            return None
