"""A recording reverse proxy (aiohttp) for OpenAI-compatible traffic we do not send ourselves.

Why: our own API client writes the request log `kura-perf calibrate` fits (meter/request_log.py), but
Kura builds its own openai clients, and so does any other tool a team wants to calibrate from. Pointed
at this proxy (its base URL `http://127.0.0.1:PORT/v1`), such a client's every request is forwarded to
the upstream base URL unchanged (method, query, body, headers, Authorization included) and the
upstream's answer is streamed back unchanged (status, headers, bytes, still compressed if it was), and
one line in the same format as our client's is appended per request: model (from the request's JSON
`model`), endpoint, prompt and completion tokens (from the answer's `usage`, also the last `usage` of
a streamed answer), latency, status, the two rate-limit headers. Never content, never a header's value
but those two limits, never the key. The proxy cannot see what a request is for nor whether it is a
retry: `kind` is `embeddings` for the embeddings endpoint and null otherwise, `retry` is 0.

Latency is from the request being sent upstream to the answer's last byte received from it: the
endpoint's time plus the network, without the client's own overhead (a few ms on loopback).

Paths: `/v1/<rest>` goes to `<upstream>/<rest>`; `GET /_proxy/health` answers the proxy's liveness;
anything else is 404. No answer from the upstream: 502 (connection refused, reset) or 504 (timeout),
logged as `connection_error` / `timeout`. Bound to 127.0.0.1 only.
"""

from __future__ import annotations

import asyncio
import gzip
import json
import os
import time
import zlib
from dataclasses import dataclass
from urllib.parse import urlsplit

import aiohttp
from aiohttp import web

from kura_perf.errors import KuraPerfError
from kura_perf.http_app import RunningServer, serve_app
from kura_perf.meter.request_log import RequestEntry, RequestLog, endpoint_of, now_iso
from kura_perf.proxy import DEFAULT_TIMEOUT_S

# Headers that belong to one connection, not to the request (RFC 9110 7.6.1), plus the two aiohttp
# sets itself from what it sends: never forwarded in either direction.
_HOP_BY_HOP = {"connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te", "trailer",
               "transfer-encoding", "upgrade", "host", "content-length"}
_USAGE_BYTES = 64 * 1024 * 1024  # an answer larger than this is still forwarded, but not parsed for usage


class ProxyError(KuraPerfError):
    """A proxy that cannot start: the message names the setting."""


@dataclass(frozen=True)
class ProxyConfig:
    upstream: str  # a base URL, e.g. https://api.openai.com/v1: the proxy's /v1 stands for it
    api_log: str
    port: int = 0
    timeout_s: float = DEFAULT_TIMEOUT_S  # per request, to the answer's last byte

    def __post_init__(self) -> None:
        parts = urlsplit(self.upstream)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ProxyError(f"--upstream {self.upstream!r}: expected an http(s) base URL, "
                             f"e.g. https://api.openai.com/v1")
        if not self.api_log:
            raise ProxyError("--api-log: a file to append the request log to is required")
        if not 0 <= self.port <= 65535:
            raise ProxyError(f"--port {self.port}: expected 0..65535 (0 = any free port)")

    @property
    def upstream_base(self) -> str:
        return self.upstream.rstrip("/")


def _model_of(body: bytes) -> str:
    """The request's `model` (the only field of the body read), 'unknown' when it has none."""
    try:
        model = json.loads(body).get("model") if body else None
    except (ValueError, AttributeError, UnicodeDecodeError):
        model = None
    return model if isinstance(model, str) and model else "unknown"


def _decoded(raw: bytes, encoding: str) -> bytes | None:
    encoding = encoding.strip().lower()
    try:
        if encoding in ("", "identity"):
            return raw
        if encoding == "gzip":
            return gzip.decompress(raw)
        if encoding == "deflate":
            try:
                return zlib.decompress(raw)
            except zlib.error:
                return zlib.decompress(raw, -zlib.MAX_WBITS)
        if encoding == "br":
            import brotli  # aiohttp's optional dependency; without it a brotli answer has no usage logged

            return brotli.decompress(raw)
    except Exception:  # noqa: BLE001 - usage is best effort: a body we cannot decode is still forwarded
        return None
    return None


def usage_of(raw: bytes, content_type: str, encoding: str) -> dict:
    """The answer's `usage`: of the JSON body, or the last one a server-sent-event stream carried."""
    body = _decoded(raw, encoding)
    if body is None:
        return {}
    if "event-stream" in content_type:
        usage: dict = {}
        for line in body.splitlines():
            if line.startswith(b"data:") and b'"usage"' in line:
                try:
                    found = json.loads(line[5:]).get("usage")
                except (ValueError, AttributeError):
                    continue
                if isinstance(found, dict):
                    usage = found
        return usage
    if "json" not in content_type:
        return {}
    try:
        usage = json.loads(body).get("usage")
    except (ValueError, AttributeError, UnicodeDecodeError):
        return {}
    return usage if isinstance(usage, dict) else {}


def _count(value) -> int | None:
    try:
        return int(value) if value is not None and not isinstance(value, bool) else None
    except (TypeError, ValueError):
        return None


class RecordingProxy:
    """The aiohttp application and its one upstream session."""

    def __init__(self, config: ProxyConfig):
        self.config = config
        self.log = RequestLog(config.api_log)
        self.session: aiohttp.ClientSession | None = None
        self.requests = 0

    def app(self) -> web.Application:
        app = web.Application(client_max_size=0)  # bodies are streamed through, never capped here
        app.router.add_get("/_proxy/health", self._health)
        app.router.add_route("*", "/v1/{rest:.*}", self._forward)
        app.on_startup.append(self._open)
        app.on_cleanup.append(self._close)
        return app

    async def _open(self, _app) -> None:
        # trust_env: a real endpoint may be reachable only through the environment's HTTP proxy
        # (no_proxy honoured); auto_decompress off: the answer's bytes go back exactly as they came.
        self.session = aiohttp.ClientSession(
            trust_env=True, auto_decompress=False,
            timeout=aiohttp.ClientTimeout(total=self.config.timeout_s),
            connector=aiohttp.TCPConnector(limit=0))  # the client's own concurrency is what is measured

    async def _close(self, _app) -> None:
        if self.session is not None:
            await self.session.close()

    async def _health(self, _request: web.Request) -> web.Response:
        return web.json_response({"ok": True, "pid": os.getpid(), "upstream": self.config.upstream,
                                  "requests": self.requests})

    def _append(self, path: str, model: str, status: int | str, elapsed_s: float, usage: dict | None = None,
                headers=None) -> None:
        endpoint = endpoint_of(path)
        usage = usage or {}
        self.log.append(RequestEntry(
            ts=now_iso(), model=model, endpoint=endpoint, kind="embeddings" if endpoint == "embeddings" else None,
            status=status, latency_s=round(elapsed_s, 6), retry=0,
            prompt_tokens=_count(usage.get("prompt_tokens")), completion_tokens=_count(usage.get("completion_tokens")),
            limit_requests=_count((headers or {}).get("x-ratelimit-limit-requests")),
            limit_tokens=_count((headers or {}).get("x-ratelimit-limit-tokens"))))

    async def _forward(self, request: web.Request) -> web.StreamResponse:
        self.requests += 1
        body = await request.read()
        model = _model_of(body) if request.method == "POST" else "unknown"
        url = f"{self.config.upstream_base}/{request.match_info['rest']}"
        if request.query_string:
            url += "?" + request.query_string
        headers = [(k, v) for k, v in request.headers.items() if k.lower() not in _HOP_BY_HOP]
        path = request.path
        answer: web.StreamResponse | None = None
        started = time.perf_counter()
        try:
            async with self.session.request(request.method, url, headers=headers, data=body or None,
                                            allow_redirects=False) as upstream:
                answer = web.StreamResponse(status=upstream.status, reason=upstream.reason)
                for key, value in upstream.headers.items():
                    if key.lower() not in _HOP_BY_HOP:
                        answer.headers.add(key, value)
                await answer.prepare(request)
                # The last chunk is held back until the log line is written: a client that has its whole
                # answer finds its line in the log (a run that stops right after its last call, a test).
                kept, size, held = [], 0, b""
                async for chunk in upstream.content.iter_any():
                    if held:
                        await answer.write(held)
                    held = chunk
                    size += len(chunk)
                    if size <= _USAGE_BYTES:
                        kept.append(chunk)
                elapsed = time.perf_counter() - started
                self._log_answer(path, model, upstream, elapsed, kept, size)
                if held:
                    await answer.write(held)
                await answer.write_eof()
        except (asyncio.TimeoutError, aiohttp.ServerTimeoutError):
            self._append(path, model, "timeout", time.perf_counter() - started)
            if answer is not None and answer.prepared:
                raise
            return _gateway_error(504, "the upstream did not answer in time")
        except aiohttp.ClientError as exc:
            self._append(path, model, "connection_error", time.perf_counter() - started)
            if answer is not None and answer.prepared:  # the answer had begun: the client sees it cut
                raise
            return _gateway_error(502, f"the upstream could not be reached ({type(exc).__name__})")
        return answer

    def _log_answer(self, path: str, model: str, upstream, elapsed: float, kept: list[bytes], size: int) -> None:
        usage = usage_of(b"".join(kept), upstream.headers.get("content-type", ""),
                         upstream.headers.get("content-encoding", "")) if size <= _USAGE_BYTES else {}
        ok = 200 <= upstream.status < 300
        self._append(path, model, upstream.status, elapsed, usage if ok else None, upstream.headers)


def _gateway_error(status: int, message: str) -> web.Response:
    return web.json_response({"error": {"message": f"kura-perf proxy: {message}", "type": "proxy_error",
                                         "param": None, "code": None}}, status=status)


async def start_proxy(config: ProxyConfig) -> RunningServer:
    return await serve_app(RecordingProxy(config).app(), config.port)
