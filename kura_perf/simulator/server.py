"""The simulator's HTTP server (aiohttp), bound to 127.0.0.1 only.

OpenAI-compatible endpoints:  POST /v1/chat/completions, POST /v1/embeddings, GET /v1/models.
Control endpoints (not part of OpenAI's API):
  GET  /_sim/health   liveness, pid, uptime
  GET  /_sim/log      the request log (see requestlog.py)
  POST /_sim/reset    clear the log and outages started over HTTP, refill buckets, re-seed fault draws
  GET  /_sim/config   the config in force
  POST /_sim/config   apply a partial config (same keys as SimulatorConfig.from_dict); buckets restart full
  POST /_sim/outage   {"duration_s": d, "start_in_s": 0}: every API request gets 503 in that window

Per API request, in order: the body's size (413 over max_body_bytes, refused before it is read),
parse the body (400), the model (404 model_not_found unless served: simulator/models.py), outage
(503), dropped connection, injected 5xx, forced 429, validate and count tokens (400 if invalid, as the
real API words it: n, max_tokens, the model's context), RPM/TPM buckets (429 + retry-after; a request
larger than the token bucket can ever hold gets 429 "Request too large" at once), then the answer
after its latency (lognormal, the request's model's published parameters unless the config fixes
them: simulator/latency_models.py; plus time per output token and per input token; divided by
speed_factor; the time spent computing the answer counts towards it) or, for a timeout fault, after slow_response_s. Faults answer at once. Every /v1
answer for a known model carries the x-ratelimit headers. Auth headers are never read nor logged. A
client that hangs up before its request is read costs one stderr line, not a traceback.
"""

from __future__ import annotations

import asyncio
import json
import math
import os
import random
import sys
import time
from typing import Callable

from aiohttp import web

from kura_perf.http_app import RunningServer, serve_app
from kura_perf.simulator.config import MAX_BODY_BYTES, SimulatorConfig
from kura_perf.simulator.latency_models import draw_latency_s
from kura_perf.simulator.limits import ModelLimits, RateLimiter
from kura_perf.simulator.models import CHAT, ModelSpec, ModelTable
from kura_perf.simulator.requestlog import RequestLog
from kura_perf.simulator.responses import InvalidRequest, Prepared, build_chat_completion, build_embeddings

Builder = Callable[[dict, str, ModelSpec], Prepared]
_READ_CHUNK = 1 << 16


class SimulatorState:
    """Mutable state shared by the handlers: config, buckets, fault draws, log, outage windows."""

    def __init__(self, config: SimulatorConfig):
        self.boot = time.monotonic()
        self.log = RequestLog()
        self.runtime_outages: list[tuple[float, float]] = []  # monotonic (start, end)
        self.port = config.port
        self.apply(config)

    def apply(self, config: SimulatorConfig) -> None:
        self.config = config
        self.rng = random.Random(config.seed)
        self.models = ModelTable(config.models)
        self.limiter = RateLimiter({"chat": config.chat, "embeddings": config.embeddings}, config.burst_s)

    def reset(self) -> None:
        self.log.reset()
        self.runtime_outages.clear()
        self.apply(self.config)

    def in_outage(self, now: float) -> bool:
        since_boot = now - self.boot
        if any(start <= since_boot < start + length for start, length in self.config.faults.outages):
            return True
        return any(start <= now < end for start, end in self.runtime_outages)

    def latency_s(self, kind: str, model: str, prompt_tokens: int, completion_tokens: int) -> float:
        """The request's latency: its model's (or the endpoint's) parameters, over the speed factor."""
        return draw_latency_s(self.config.latency_endpoint(kind, model), self.rng, prompt_tokens,
                              completion_tokens, self.config.speed_factor)


STATE = web.AppKey("simulator_state", SimulatorState)


def error_response(status: int, message: str, error_type: str, code: str | None = None,
                   param: str | None = None, headers: dict[str, str] | None = None) -> web.Response:
    body = {"error": {"message": message, "type": error_type, "param": param, "code": code}}
    return web.json_response(body, status=status, headers=headers)


def _say(state: SimulatorState, text: str) -> None:
    if state.config.verbose:
        print(text, file=sys.stderr, flush=True)


def _log_disconnect(request: web.Request, exc: BaseException) -> None:
    """One line, always: a client that hung up is an event to see, not a server failure to debug."""
    print(f"client disconnected: {request.method} {request.path} from {request.remote} "
          f"({type(exc).__name__}: {exc})", file=sys.stderr, flush=True)


class BodyTooLarge(Exception):
    def __init__(self, size: int, limit: int, declared: bool = False):
        super().__init__(f"Maximum content size limit ({limit}) exceeded ({size} bytes "
                         f"{'declared by Content-Length' if declared else 'read'})")


async def _read_body(request: web.Request, limit: int) -> bytes:
    """The body, refused (BodyTooLarge) as soon as it is known to exceed `limit`: from Content-Length
    before a byte is read, else while reading, so the server never holds more than `limit` of it."""
    if request.content_length is not None and request.content_length > limit:
        raise BodyTooLarge(request.content_length, limit, declared=True)
    chunks, size = [], 0
    async for chunk in request.content.iter_chunked(_READ_CHUNK):
        size += len(chunk)
        if size > limit:
            raise BodyTooLarge(size, limit)
        chunks.append(chunk)
    return b"".join(chunks)


def _wrong_endpoint(kind: str, model: str) -> web.Response:
    if kind == CHAT:  # the real API's words for an embeddings model sent to chat
        return error_response(404, "This is not a chat model and thus not supported in the v1/chat/completions "
                                   "endpoint. Did you mean to use v1/completions?", "invalid_request_error",
                              param="model")
    return error_response(400, f"The model `{model}` is a chat model and does not support embeddings.",
                          "invalid_request_error", param="model")


async def _drop_connection(request: web.Request) -> web.StreamResponse:
    """Close the socket without a byte of response: the client sees a disconnect."""
    transport = request.transport
    if transport is not None:
        transport.abort()
    raise asyncio.CancelledError  # aiohttp ends the handler quietly; nothing is written


async def _serve_api(request: web.Request, endpoint: str, kind: str, build: Builder) -> web.StreamResponse:
    state = request.app[STATE]
    faults = state.config.faults
    try:
        body = json.loads(await _read_body(request, state.config.max_body_bytes))
        if not isinstance(body, dict):
            raise ValueError
    except BodyTooLarge as exc:
        state.log.record(endpoint, "unknown", 413)
        return error_response(413, str(exc), "invalid_request_error")
    except ConnectionError as exc:  # the client hung up while sending
        state.log.record(endpoint, "unknown", "disconnected")
        _log_disconnect(request, exc)
        raise asyncio.CancelledError from None  # nobody to answer; aiohttp ends the handler quietly
    except (ValueError, UnicodeDecodeError):
        state.log.record(endpoint, "unknown", 400)
        return error_response(400, "We could not parse the JSON body of your request.", "invalid_request_error")
    model = body.get("model")
    if not isinstance(model, str) or not model:
        state.log.record(endpoint, "unknown", 400)
        return error_response(400, "you must provide a model parameter", "invalid_request_error", param="model")
    spec = state.models.lookup(model)
    if spec is None:  # before any bucket is made for it: a stream of bad names holds no memory
        state.log.record(endpoint, model, 404)
        return error_response(404, f"The model `{model}` does not exist or you do not have access to it.",
                              "invalid_request_error", code="model_not_found")
    if spec.kind not in (None, kind):
        state.log.record(endpoint, model, 404 if kind == CHAT else 400)
        return _wrong_endpoint(kind, model)

    now = time.monotonic()
    limits: ModelLimits = state.limiter.for_model(kind, model, now)

    def answer_error(status: int, fault: str | None, message: str, error_type: str, code: str | None,
                     extra: dict[str, str] | None = None, param: str | None = None) -> web.Response:
        state.log.record(endpoint, model, status, fault=fault)
        _say(state, f"{request.method} {request.path} model={model} status={status} fault={fault}")
        return error_response(status, message, error_type, code, param,
                              headers={**limits.headers(now), **(extra or {})})

    if state.in_outage(now):
        return answer_error(503, "outage", "The server is temporarily unavailable (simulated outage).",
                            "server_error", "service_unavailable")
    if state.rng.random() < faults.drop_rate:
        state.log.record(endpoint, model, "dropped", fault="dropped")
        _say(state, f"{request.method} {request.path} model={model} status=dropped")
        return await _drop_connection(request)
    if state.rng.random() < faults.error_rate:
        status = state.rng.choice((500, 503))
        return answer_error(status, "server_error", "The server had an error while processing your request.",
                            "server_error", None)
    if state.rng.random() < faults.rate_limit_rate:
        wait = faults.forced_retry_after_s
        return answer_error(429, "forced_rate_limit", f"Rate limit reached for {model} (simulated). "
                            f"Please try again in {wait:g}s.", "requests", "rate_limit_exceeded",
                            _retry_after_headers(wait))
    try:
        prepared = build(body, model, spec)
        prompt_tokens, completion_tokens = prepared.prompt_tokens, prepared.completion_tokens
    except InvalidRequest as exc:
        return answer_error(400, None, str(exc), exc.error_type, exc.code, param=exc.param)

    admission = limits.admit(prompt_tokens + completion_tokens, now)
    if not admission.admitted:
        if admission.too_large:
            message = (f"Request too large for {model}: limit {admission.limit} {admission.limit_name} per min, "
                       f"requested {prompt_tokens + completion_tokens}.")
            return answer_error(429, "rate_limited", message, "tokens", "rate_limit_exceeded")
        message = (f"Rate limit reached for {model} on {admission.limit_name} per min: limit {admission.limit}. "
                   f"Please try again in {admission.retry_after_s:.3f}s.")
        return answer_error(429, "rate_limited", message, admission.limit_name, "rate_limit_exceeded",
                            _retry_after_headers(admission.retry_after_s))

    headers = limits.headers(now)  # the buckets as this request left them
    delay = state.latency_s(kind, model, prompt_tokens, completion_tokens)
    fault = None
    if state.rng.random() < faults.timeout_rate:
        delay, fault = faults.slow_response_s, "timeout"
    state.log.record(endpoint, model, 200, prompt_tokens, completion_tokens, fault=fault)
    _say(state, f"{request.method} {request.path} model={model} status=200 fault={fault} delay={delay:.3f}s")
    started = time.monotonic()
    # Vectors and JSON off the event loop, so admission of other requests is not held up.
    body_bytes = await asyncio.to_thread(lambda: json.dumps(prepared.render()).encode())
    remaining = delay - (time.monotonic() - started)
    if remaining > 0:
        await asyncio.sleep(remaining)
    return web.Response(body=body_bytes, content_type="application/json", headers=headers)


def _retry_after_headers(seconds: float) -> dict[str, str]:
    return {"retry-after": str(max(1, math.ceil(seconds))), "retry-after-ms": str(max(1, math.ceil(seconds * 1000)))}


async def chat_completions(request: web.Request) -> web.StreamResponse:
    return await _serve_api(request, "chat.completions", "chat", build_chat_completion)


async def embeddings(request: web.Request) -> web.StreamResponse:
    return await _serve_api(request, "embeddings", "embeddings", build_embeddings)


async def list_models(request: web.Request) -> web.Response:
    state = request.app[STATE]
    state.log.record("models", "-", 200)
    names = state.models.names()
    data = [{"id": n, "object": "model", "created": 1700000000, "owned_by": "kura-perf-simulator"} for n in names]
    return web.json_response({"object": "list", "data": data})


async def health(request: web.Request) -> web.Response:
    state = request.app[STATE]
    return web.json_response({"status": "ok", "pid": os.getpid(), "port": state.port,
                              "uptime_s": round(time.monotonic() - state.boot, 3)})


async def read_log(request: web.Request) -> web.Response:
    return web.json_response(request.app[STATE].log.snapshot())


async def reset(request: web.Request) -> web.Response:
    request.app[STATE].reset()
    return web.json_response({"status": "reset"})


async def read_config(request: web.Request) -> web.Response:
    return web.json_response(request.app[STATE].config.to_dict())


async def update_config(request: web.Request) -> web.Response:
    state = request.app[STATE]
    try:
        changes = await request.json()
        changes = {k: v for k, v in changes.items() if k not in ("host", "port")}
        state.apply(state.config.updated(changes))
    except (ValueError, TypeError, AttributeError) as exc:
        return error_response(400, f"invalid simulator config: {exc}", "invalid_request_error")
    return web.json_response(state.config.to_dict())


async def start_outage(request: web.Request) -> web.Response:
    state = request.app[STATE]
    try:
        body = await request.json() if request.can_read_body else {}
        duration, start_in = float(body.get("duration_s", 1.0)), float(body.get("start_in_s", 0.0))
    except (ValueError, TypeError, AttributeError) as exc:
        return error_response(400, f"invalid outage: {exc}", "invalid_request_error")
    start = time.monotonic() + start_in
    state.runtime_outages.append((start, start + duration))
    return web.json_response({"status": "scheduled", "start_in_s": start_in, "duration_s": duration})


@web.middleware
async def openai_style_http_errors(request: web.Request, handler) -> web.StreamResponse:
    """Unknown routes and wrong methods answer in OpenAI's error format too."""
    try:
        return await handler(request)
    except ConnectionError as exc:  # the client went away mid-request: one line, no traceback
        _log_disconnect(request, exc)
        raise asyncio.CancelledError from None
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        return error_response(exc.status, f"{exc.reason}: {request.method} {request.path}", "invalid_request_error")


def build_app(config: SimulatorConfig) -> web.Application:
    app = web.Application(client_max_size=MAX_BODY_BYTES, middlewares=[openai_style_http_errors])
    app[STATE] = SimulatorState(config)
    app.router.add_post("/v1/chat/completions", chat_completions)
    app.router.add_post("/v1/embeddings", embeddings)
    app.router.add_get("/v1/models", list_models)
    app.router.add_get("/_sim/health", health)
    app.router.add_get("/_sim/log", read_log)
    app.router.add_post("/_sim/reset", reset)
    app.router.add_get("/_sim/config", read_config)
    app.router.add_post("/_sim/config", update_config)
    app.router.add_post("/_sim/outage", start_outage)
    return app


async def start_server(config: SimulatorConfig) -> RunningServer:
    app = build_app(config)
    server = await serve_app(app, config.port)
    app[STATE].port = server.port
    return server
