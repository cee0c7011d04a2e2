"""Bodies of successful answers: chat completions (text, tool calls, structured output) and embeddings.

Pure functions from a request body to a `Prepared` answer: its token counts (known up front, so the
TPM bucket can be charged before any costly work) and a `render()` that produces the body (the
vectors are computed only for admitted requests). The HTTP layer decides faults, limits and timing.
Invalid requests raise InvalidRequest, which becomes a 400 in OpenAI's error format.
"""

from __future__ import annotations

import base64
import json
import time
import uuid
from dataclasses import dataclass
from typing import Any, Callable

from kura_perf.simulator.schema_fill import fill_schema
from kura_perf.simulator.text import PromptView, content_text
from kura_perf.simulator.tokens import estimate_tokens
from kura_perf.simulator.vectors import embed_texts, native_dimension, supports_dimensions

MAX_EMBEDDING_INPUTS = 2048


@dataclass
class Prepared:
    prompt_tokens: int
    completion_tokens: int
    render: Callable[[], dict]


class InvalidRequest(Exception):
    def __init__(self, message: str, param: str | None = None):
        super().__init__(message)
        self.param = param


def _dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def chat_prompt_tokens(body: dict) -> int:
    """Prompt tokens: every message's text, plus the tool and response-format schemas, which a
    real model also reads."""
    tokens = sum(estimate_tokens(content_text(m.get("content"))) for m in body["messages"] if isinstance(m, dict))
    if body.get("tools"):
        tokens += estimate_tokens(_dumps(body["tools"]))
    response_format = body.get("response_format")
    if isinstance(response_format, dict) and response_format.get("type") == "json_schema":
        tokens += estimate_tokens(_dumps(response_format.get("json_schema", {})))
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


def build_chat_completion(body: dict, model: str) -> Prepared:
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise InvalidRequest("'messages' must be a non-empty array", "messages")
    if body.get("stream"):
        raise InvalidRequest("the simulator does not stream; send stream=false", "stream")
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
        limit = body.get("max_completion_tokens") or body.get("max_tokens")
        if isinstance(limit, int) and limit > 0 and estimate_tokens(text) > limit:
            text, finish_reason = text[: limit * 4], "length"
        completion_text = message["content"] = text
    else:
        raise InvalidRequest(f"unsupported response_format type {format_type!r}", "response_format.type")

    prompt_tokens = chat_prompt_tokens(body)
    completion_tokens = estimate_tokens(completion_text)
    payload = {
        "id": f"chatcmpl-{uuid.uuid4().hex[:24]}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "system_fingerprint": "fp_kura_perf_sim",
        "choices": [{"index": 0, "message": message, "finish_reason": finish_reason, "logprobs": None}],
        "usage": {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
        },
    }
    return Prepared(prompt_tokens, completion_tokens, lambda: payload)


def _embedding_inputs(raw: Any) -> tuple[list[str], int]:
    """Texts to embed and their prompt tokens; token-id inputs count one token per id."""
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
            texts.append(item)
            tokens += estimate_tokens(item)
        elif isinstance(item, list) and item and all(isinstance(t, int) for t in item):
            texts.append(" ".join(f"tok{t}" for t in item))
            tokens += len(item)
        else:
            raise InvalidRequest("'input' items must be non-empty strings or token arrays", "input")
    return texts, tokens


def build_embeddings(body: dict, model: str) -> Prepared:
    texts, prompt_tokens = _embedding_inputs(body.get("input"))
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
