"""Bodies of successful answers: chat completions (text, tool calls, structured output) and embeddings.

Pure functions from a request body to a `Prepared` answer: its token counts (known up front, so the
TPM bucket can be charged before any costly work) and a `render()` that produces the body (the
vectors are computed only for admitted requests). The HTTP layer decides faults, limits and timing.
Invalid requests raise InvalidRequest, which becomes a 400 in OpenAI's error format, with the real
API's wording where it refuses: `n` outside 1..128, `max_tokens` / `max_completion_tokens` not a
positive integer within the model's output limit, a chat request over the model's context window, an
embeddings input over 8192 tokens or a request over 300,000 tokens. These are checked before any
costly work (reading the prompt, computing vectors), so an oversized request is refused at once.
"""

from __future__ import annotations

import base64
import copy
import json
import time
import uuid
from dataclasses import dataclass
from typing import Any, Callable

from kura_perf.simulator.models import EMBEDDING_INPUT_TOKENS, EMBEDDING_REQUEST_TOKENS, EMBEDDINGS, MAX_N, ModelSpec
from kura_perf.simulator.schema_fill import fill_schema
from kura_perf.simulator.text import PromptView, content_text
from kura_perf.simulator.tokens import count_chat_tokens, count_tokens, truncate_to_tokens
from kura_perf.simulator.vectors import embed_texts, native_dimension, supports_dimensions

MAX_EMBEDDING_INPUTS = 2048


@dataclass
class Prepared:
    prompt_tokens: int
    completion_tokens: int
    render: Callable[[], dict]


class InvalidRequest(Exception):
    """A 400 (or `status`) in OpenAI's error shape: {"error": {"message", "type", "param", "code"}}."""

    def __init__(self, message: str, param: str | None = None, code: str | None = None,
                 error_type: str = "invalid_request_error"):
        super().__init__(message)
        self.param, self.code, self.error_type = param, code, error_type


_JSON_TYPE_NAMES = {str: "a string", float: "a decimal number", bool: "a boolean", list: "an array", dict: "an object"}


def integer_param(body: dict, name: str, low: int, high: int | None = None) -> int | None:
    """body[name] as an int within low..high, None when absent or null; InvalidRequest as OpenAI words it."""
    value = body.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        got = _JSON_TYPE_NAMES.get(type(value), type(value).__name__)
        raise InvalidRequest(f"Invalid type for '{name}': expected an integer, but got {got} instead.", name,
                             "invalid_type")
    if value < low:
        raise InvalidRequest(f"Invalid '{name}': integer below minimum value. Expected a value >= {low}, but got "
                             f"{value} instead.", name, "integer_below_min_value")
    if high is not None and value > high:
        raise InvalidRequest(f"Invalid '{name}': integer above maximum value. Expected a value <= {high}, but got "
                             f"{value} instead.", name, "integer_above_max_value")
    return value


def _completion_limit(body: dict, spec: ModelSpec) -> int | None:
    """max_completion_tokens (or the older max_tokens): at least 1, at most what the model can write."""
    limit = None
    for name in ("max_tokens", "max_completion_tokens"):
        value = integer_param(body, name, 1)
        if value is not None and value > spec.max_output_tokens:
            raise InvalidRequest(f"{name} is too large: {value}. This model supports at most "
                                 f"{spec.max_output_tokens} completion tokens, whereas you provided {value}.",
                                 name, "invalid_value")
        limit = value if value is not None else limit
    return limit


def _check_context(prompt_tokens: int, completion_limit: int | None, spec: ModelSpec) -> None:
    if completion_limit is not None and prompt_tokens + completion_limit > spec.context_tokens:
        raise InvalidRequest(f"This model's maximum context length is {spec.context_tokens} tokens. However, you "
                             f"requested {prompt_tokens + completion_limit} tokens ({prompt_tokens} in the messages, "
                             f"{completion_limit} in the completion). Please reduce the length of the messages or "
                             f"completion.", "messages", "context_length_exceeded")
    if prompt_tokens > spec.context_tokens:
        raise InvalidRequest(f"This model's maximum context length is {spec.context_tokens} tokens. However, your "
                             f"messages resulted in {prompt_tokens} tokens. Please reduce the length of the "
                             f"messages.", "messages", "context_length_exceeded")


def _dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def chat_prompt_tokens(body: dict, model: str | None = None) -> int:
    """Prompt tokens in the model's encoding: every message with OpenAI's per-message overhead
    (kura_perf/tokens.py), plus the tool and response-format schemas, which a real model also reads
    (counted as their compact JSON)."""
    tokens = count_chat_tokens(body["messages"], model, content_text)
    if body.get("tools"):
        tokens += count_tokens(_dumps(body["tools"]), model)
    response_format = body.get("response_format")
    if isinstance(response_format, dict) and response_format.get("type") == "json_schema":
        tokens += count_tokens(_dumps(response_format.get("json_schema", {})), model)
    return tokens


def _chosen_tool(tools: list, tool_choice: Any) -> dict:
    functions = [
        t.get("function", {}) for t in tools if isinstance(t, dict) and t.get("type", "function") == "function"
    ]
    if not functions:
        raise InvalidRequest("tools must contain at least one function", "tools")
    if isinstance(tool_choice, dict):
        wanted = (tool_choice.get("function") or {}).get("name")
        for function in functions:
            if function.get("name") == wanted:
                return function
        raise InvalidRequest(f"tool_choice names function {wanted!r}, which is not in tools", "tool_choice")
    return functions[0]


def build_chat_completion(body: dict, model: str, spec: ModelSpec) -> Prepared:
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise InvalidRequest("'messages' must be a non-empty array", "messages")
    if body.get("stream"):
        raise InvalidRequest("the simulator does not stream; send stream=false", "stream")
    n = integer_param(body, "n", 1, MAX_N) or 1
    completion_limit = _completion_limit(body, spec)
    prompt_tokens = chat_prompt_tokens(body, model)
    _check_context(prompt_tokens, completion_limit, spec)
    view = PromptView.from_messages(messages)
    tools = body.get("tools") or []
    tool_choice = body.get("tool_choice")
    response_format = body.get("response_format") or {}
    format_type = response_format.get("type") if isinstance(response_format, dict) else None

    message: dict[str, Any] = {"role": "assistant", "content": None, "refusal": None}
    finish_reason = "stop"
    if tools and tool_choice != "none":
        function = _chosen_tool(tools, tool_choice)
        parameters = function.get("parameters") or {"type": "object", "properties": {}}
        arguments = _dumps(fill_schema(parameters, view))
        message["tool_calls"] = [{
            "id": f"call_{uuid.uuid4().hex[:24]}",
            "type": "function",
            "function": {"name": function.get("name", "function"), "arguments": arguments},
        }]
        finish_reason = "tool_calls"
        completion_text = function.get("name", "") + arguments
    elif format_type == "json_schema":
        schema = (response_format.get("json_schema") or {}).get("schema")
        if not isinstance(schema, dict):
            raise InvalidRequest("response_format.json_schema.schema must be an object", "response_format")
        completion_text = message["content"] = _dumps(fill_schema(schema, view))
    elif format_type == "json_object":
        completion_text = message["content"] = _dumps({
            "name": view.name(), "summary": view.text_for("summary"), "description": view.text_for("description"),
        })
    elif format_type in (None, "text"):
        text = view.plain_answer()
        if completion_limit is not None and count_tokens(text, model) > completion_limit:
            text, finish_reason = truncate_to_tokens(text, completion_limit, model), "length"
        completion_text = message["content"] = text
    else:
        raise InvalidRequest(f"unsupported response_format type {format_type!r}", "response_format.type")

    completion_tokens = count_tokens(completion_text, model) * n  # each of the n choices is generated
    choices = [{"index": i, "message": message if i == 0 else copy.deepcopy(message), "finish_reason": finish_reason,
                "logprobs": None} for i in range(n)]
    payload = {
        "id": f"chatcmpl-{uuid.uuid4().hex[:24]}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "system_fingerprint": "fp_kura_perf_sim",
        "choices": choices,
        "usage": {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
        },
    }
    return Prepared(prompt_tokens, completion_tokens, lambda: payload)


def _embedding_inputs(raw: Any, input_limit: int, model: str | None = None) -> tuple[list[str], int]:
    """Texts to embed and their prompt tokens; token-id inputs count one token per id. Each input may
    hold `input_limit` tokens, all of them together EMBEDDING_REQUEST_TOKENS."""
    if isinstance(raw, str):
        raw = [raw]
    elif isinstance(raw, list) and raw and all(isinstance(t, int) for t in raw):
        raw = [raw]
    if not isinstance(raw, list) or not raw:
        raise InvalidRequest("'input' must be a non-empty string or array", "input")
    if len(raw) > MAX_EMBEDDING_INPUTS:
        raise InvalidRequest(f"'input' has {len(raw)} items; at most {MAX_EMBEDDING_INPUTS} are allowed", "input")
    texts, tokens = [], 0
    for item in raw:
        if isinstance(item, str):
            if not item:
                raise InvalidRequest("'$.input' is invalid: empty strings cannot be embedded", "input")
            item_tokens = count_tokens(item, model)
        elif isinstance(item, list) and item and all(isinstance(t, int) for t in item):
            item_tokens = len(item)
        else:
            raise InvalidRequest("'input' items must be non-empty strings or token arrays", "input")
        if item_tokens > input_limit:
            raise InvalidRequest(f"This model's maximum context length is {input_limit} tokens, however you requested "
                                 f"{item_tokens} tokens ({item_tokens} in your prompt; 0 for the completion). Please "
                                 f"reduce your prompt; or completion length.")
        tokens += item_tokens
        texts.append(item)
    if tokens > EMBEDDING_REQUEST_TOKENS:
        raise InvalidRequest(f"Requested {tokens} tokens, max {EMBEDDING_REQUEST_TOKENS} tokens per request", None,
                             "max_tokens_per_request", "max_tokens_per_request")
    # Token-id inputs become text only once the request is known to be within its limits.
    return [t if isinstance(t, str) else " ".join(f"tok{i}" for i in t) for t in texts], tokens


def build_embeddings(body: dict, model: str, spec: ModelSpec) -> Prepared:
    input_limit = spec.context_tokens if spec.kind == EMBEDDINGS else EMBEDDING_INPUT_TOKENS
    texts, prompt_tokens = _embedding_inputs(body.get("input"), input_limit, model)
    dimensions = body.get("dimensions")
    if dimensions is not None:
        if not supports_dimensions(model):
            raise InvalidRequest(f"This model does not support specifying dimensions ({model})", "dimensions")
        if not isinstance(dimensions, int) or not 1 <= dimensions <= native_dimension(model):
            raise InvalidRequest(f"'dimensions' must be an integer within 1..{native_dimension(model)}", "dimensions")
    encoding = body.get("encoding_format") or "float"
    if encoding not in ("float", "base64"):
        raise InvalidRequest("'encoding_format' must be 'float' or 'base64'", "encoding_format")

    def render() -> dict:
        vectors = embed_texts(texts, model, dimensions)
        if encoding == "base64":
            encoded: list[Any] = [base64.b64encode(v.astype("<f4").tobytes()).decode("ascii") for v in vectors]
        else:
            encoded = [v.tolist() for v in vectors]
        return {
            "object": "list",
            "data": [{"object": "embedding", "index": i, "embedding": e} for i, e in enumerate(encoded)],
            "model": model,
            "usage": {"prompt_tokens": prompt_tokens, "total_tokens": prompt_tokens},
        }

    return Prepared(prompt_tokens, 0, render)
