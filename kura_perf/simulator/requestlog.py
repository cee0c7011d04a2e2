"""The simulator's own count of what it answered, so a client's counters can be checked against it.

Every request to a /v1 endpoint is recorded once, when its outcome is decided (before any slow
response is sent, so the log is complete even when the client gave up): endpoint, model, status
("200", "400", "404", "413", "429", "503", ..., "dropped" when the simulator closed the connection,
"disconnected" when the client hung up before its request was read; model "unknown" when the body
gave none), tokens of successful answers, and which fault, if any, was injected.
"""

from __future__ import annotations

import time
from collections import Counter, defaultdict


class RequestLog:
    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.started = time.monotonic()
        self.counts: Counter[tuple[str, str, str]] = Counter()
        self.tokens: defaultdict[tuple[str, str, str], list[int]] = defaultdict(lambda: [0, 0])
        self.faults: Counter[str] = Counter()

    def record(self, endpoint: str, model: str, status: int | str, prompt_tokens: int = 0,
               completion_tokens: int = 0, fault: str | None = None) -> None:
        key = (endpoint, model, str(status))
        self.counts[key] += 1
        self.tokens[key][0] += prompt_tokens
        self.tokens[key][1] += completion_tokens
        if fault:
            self.faults[fault] += 1

    def snapshot(self) -> dict:
        entries = []
        by_endpoint: dict[str, dict] = {}
        for (endpoint, model, status), count in sorted(self.counts.items()):
            prompt, completion = self.tokens[(endpoint, model, status)]
            entries.append({
                "endpoint": endpoint, "model": model, "status": status, "count": count,
                "prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion,
            })
            summary = by_endpoint.setdefault(endpoint, {
                "requests": 0, "by_status": {}, "prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0,
            })
            summary["requests"] += count
            summary["by_status"][status] = summary["by_status"].get(status, 0) + count
            summary["prompt_tokens"] += prompt
            summary["completion_tokens"] += completion
            summary["total_tokens"] += prompt + completion
        return {
            "requests": sum(self.counts.values()),
            "entries": entries,
            "by_endpoint": by_endpoint,
            "faults": dict(self.faults),
            "since_reset_s": round(time.monotonic() - self.started, 3),
        }
