"""The API request log a user keeps: one JSON line per HTTP request our API client sent.

Why: the stage record keeps totals and percentiles, which cannot be refitted. One line per request
(when, which model, which endpoint and request kind, tokens from the answer's `usage`, latency, status,
retry number) is what `kura-perf calibrate` needs to fit a latency model to a real endpoint. A line
never holds content nor the key: only the fields below.

Appends are line-safe: each line is one `write` on a file opened with O_APPEND, so lines from several
models (and processes) sharing the file interleave whole, never mixed. Reading is `read_log`, which
refuses a bad line naming the file and line.
"""

from __future__ import annotations

import json
import math
import os
import threading
from contextvars import ContextVar
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path

from kura_perf.errors import KuraPerfError

FORMAT_VERSION = 1
ENDPOINTS = ("chat", "embeddings")

# What the request being sent is (summary, cluster_name, embeddings) and its retry number (0 = first
# attempt): set by the model around each attempt, read by the counting transport in the same task.
REQUEST_CONTEXT: ContextVar[tuple[str | None, int]] = ContextVar("kura_perf_request_context", default=(None, 0))


class RequestLogError(KuraPerfError):
    """A request log that cannot be read or written; the message names the file (and line)."""


@dataclass(frozen=True)
class RequestEntry:
    ts: str  # ISO 8601, UTC, when the answer (or the failure) came
    model: str
    endpoint: str  # chat | embeddings (| the URL's last part for anything else)
    kind: str | None  # summary | cluster_name | embeddings | None (unknown)
    status: int | str  # HTTP status, or "timeout" / "connection_error" when no answer came
    latency_s: float  # from sending the request to the last byte of the answer (or the failure)
    retry: int  # 0: first attempt
    prompt_tokens: int | None = None  # from the answer's usage; None without one
    completion_tokens: int | None = None
    limit_requests: int | None = None  # x-ratelimit-limit-requests of the answer, when sent
    limit_tokens: int | None = None  # x-ratelimit-limit-tokens

    @property
    def ok(self) -> bool:
        return isinstance(self.status, int) and 200 <= self.status < 300

    def line(self) -> str:
        return json.dumps({"v": FORMAT_VERSION, **asdict(self)}, separators=(",", ":")) + "\n"


def endpoint_of(path: str) -> str:
    """chat for /v1/chat/completions, embeddings for /v1/embeddings, else the path's last part."""
    if path.rstrip("/").endswith("chat/completions"):
        return "chat"
    return path.rstrip("/").rsplit("/", 1)[-1] or path


def now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


class RequestLog:
    """Appends entries to one file (created on first use, with its folder)."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self._lock = threading.Lock()
        self._ready = False

    def append(self, entry: RequestEntry) -> None:
        data = entry.line().encode()
        with self._lock:
            try:
                if not self._ready:
                    self.path.parent.mkdir(parents=True, exist_ok=True)
                    self._ready = True
                fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
                try:
                    os.write(fd, data)  # one write of one whole line: appenders never interleave within it
                finally:
                    os.close(fd)
            except OSError as exc:
                raise RequestLogError(f"api log {self.path}: cannot append: {exc.strerror or exc}") from None

    def __repr__(self) -> str:
        return f"RequestLog({str(self.path)!r})"


def _int_or_none(value, name: str, where: str) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise RequestLogError(f"{where}: '{name}' must be a non-negative integer or null (got {value!r})")
    return value


def parse_line(text: str, where: str) -> RequestEntry:
    """One log line as an entry, or a RequestLogError naming `where` (file:line) and what is wrong."""
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise RequestLogError(f"{where}: not a JSON object ({exc.msg})") from None
    if not isinstance(data, dict):
        raise RequestLogError(f"{where}: not a JSON object")
    for key in ("ts", "model", "endpoint", "status", "latency_s"):
        if key not in data:
            raise RequestLogError(f"{where}: missing '{key}'")
    if not isinstance(data["model"], str) or not data["model"]:
        raise RequestLogError(f"{where}: 'model' must be a non-empty string (got {data['model']!r})")
    if not isinstance(data["endpoint"], str):
        raise RequestLogError(f"{where}: 'endpoint' must be a string (got {data['endpoint']!r})")
    status = data["status"]
    if isinstance(status, bool) or not isinstance(status, (int, str)):
        raise RequestLogError(f"{where}: 'status' must be an HTTP status or a word (got {status!r})")
    latency = data["latency_s"]
    if isinstance(latency, bool) or not isinstance(latency, (int, float)) or not math.isfinite(latency) \
            or latency < 0:
        raise RequestLogError(f"{where}: 'latency_s' must be a number of seconds >= 0 (got {latency!r})")
    kind = data.get("kind")
    if kind is not None and not isinstance(kind, str):
        raise RequestLogError(f"{where}: 'kind' must be a string or null (got {kind!r})")
    return RequestEntry(
        ts=str(data["ts"]), model=data["model"], endpoint=data["endpoint"], kind=kind, status=status,
        latency_s=float(latency), retry=_int_or_none(data.get("retry", 0), "retry", where) or 0,
        prompt_tokens=_int_or_none(data.get("prompt_tokens"), "prompt_tokens", where),
        completion_tokens=_int_or_none(data.get("completion_tokens"), "completion_tokens", where),
        limit_requests=_int_or_none(data.get("limit_requests"), "limit_requests", where),
        limit_tokens=_int_or_none(data.get("limit_tokens"), "limit_tokens", where),
    )


def read_log(path: str | os.PathLike) -> list[RequestEntry]:
    """Every entry of a request log; blank lines are skipped, a bad line is refused (file and line)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise RequestLogError(f"api log not found: {path}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise RequestLogError(f"api log {path}: cannot read: {exc}") from None
    entries = []
    for number, line in enumerate(text.splitlines(), start=1):
        if line.strip():
            entries.append(parse_line(line, f"{path}:{number}"))
    return entries
