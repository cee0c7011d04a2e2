"""Exact token counts, offline: the one place that turns text into OpenAI tokens.

Used for the simulator's `usage` and TPM buckets, for the client's pacing estimates and therefore for
costs. The encodings come from the `bpe-openai` wheel (the BPE ranks ship inside it; nothing is
downloaded at run time) and are loaded once per process (`encoding`, cached).

Which encoding (`encoding_name`):
- o200k_base: the gpt-4o and gpt-4.1 families, gpt-5, the o-series (o1, o3, o4-mini), and any model
  name we do not know (the current OpenAI encoding).
- cl100k_base: text-embedding-3-small/-large, text-embedding-ada-002, gpt-4 (not 4o), gpt-3.5-turbo.
- claude-*: Anthropic publishes no tokenizer for its Claude 3 models, so they are counted with
  o200k_base. That is an approximation (Anthropic's own counts differ, typically a little higher for
  English); costs of claude models are therefore approximate too.

Chat prompts (`count_chat_tokens`) add OpenAI's per-message overhead, as given in OpenAI's cookbook
"How to count tokens with tiktoken" (`num_tokens_from_messages`, for gpt-4o, gpt-4o-mini and gpt-4):
3 tokens per message (<|start|>{role}<|message|> ... <|end|>), the role and content tokens, 1 more
for a `name`, and 3 for the reply's priming (<|start|>assistant<|message|>). Tool and response-format
schemas are counted as their compact JSON: OpenAI does not publish how it renders them into the
prompt, so that part is close, not exact.

Special-token text ("<|endoftext|>" inside a user's message) is counted as ordinary text, as the API
does with user content.
"""

from __future__ import annotations

import functools
import warnings
from typing import Any, Iterable

O200K_BASE = "o200k_base"
CL100K_BASE = "cl100k_base"

# Prefixes of model ids served with cl100k_base (OpenAI's model -> encoding table in tiktoken/bpe-openai).
_CL100K_PREFIXES = ("text-embedding-", "gpt-4-", "gpt-3.5", "gpt-35")
_CL100K_EXACT = frozenset({"gpt-4"})
# Per-message overhead (see the module docstring for the source).
TOKENS_PER_MESSAGE = 3
TOKENS_PER_NAME = 1
REPLY_PRIMING_TOKENS = 3


@functools.cache
def encoding(name: str):
    """The bpe-openai Encoding, loaded once per process (the load parses the ranks: ~100 ms)."""
    import bpe_openai  # imported on first use: only token-counting code pays for it

    with warnings.catch_warnings():  # bpe-openai's own importlib.resources.open_binary deprecation, not ours
        warnings.simplefilter("ignore", DeprecationWarning)
        return bpe_openai.get_encoding(name)


def bare_model(model: str | None) -> str:
    """'openai:gpt-4o-mini', 'openai/gpt-4o-mini' or 'gpt-4o-mini-2024-07-18' -> 'gpt-4o-mini...' (lower case)."""
    if not model:
        return ""
    name = model.split(":", 1)[1] if model.startswith("openai:") else model
    return name.rsplit("/", 1)[-1].lower()


@functools.lru_cache(maxsize=256)
def encoding_name(model: str | None) -> str:
    """The encoding a model's tokens are counted with (see the module docstring)."""
    name = bare_model(model)
    if name in _CL100K_EXACT or (name.startswith(_CL100K_PREFIXES) and not name.startswith("gpt-4o")):
        return CL100K_BASE
    return O200K_BASE


def encode(text: str, model: str | None = None) -> list[int]:
    return encoding(encoding_name(model)).encode_ordinary(text) if text else []


def count_tokens(text: str, model: str | None = None) -> int:
    """Tokens of `text` in the model's encoding (o200k_base when no model is named); 0 for ''."""
    return len(encode(text, model))


def truncate_to_tokens(text: str, limit: int, model: str | None = None) -> str:
    """The longest prefix of `text` that is at most `limit` tokens (whole tokens, decoded back)."""
    ids = encode(text, model)
    if len(ids) <= limit:
        return text
    return encoding(encoding_name(model)).decode(ids[:max(limit, 0)])


def count_message_tokens(content: str, role: str = "user", name: str | None = None, model: str | None = None) -> int:
    """One chat message: its overhead, role and content (and name)."""
    tokens = TOKENS_PER_MESSAGE + count_tokens(role, model) + count_tokens(content, model)
    if name:
        tokens += TOKENS_PER_NAME + count_tokens(name, model)
    return tokens


def count_chat_tokens(messages: Iterable[dict[str, Any]], model: str | None = None,
                      content_text=None) -> int:
    """Prompt tokens of a chat request's messages, with OpenAI's per-message overhead and the reply's
    priming. `content_text` turns a message's content into text (default: the string itself, '' for
    anything else)."""
    text_of = content_text or (lambda c: c if isinstance(c, str) else "")
    total = REPLY_PRIMING_TOKENS
    for message in messages:
        if not isinstance(message, dict):
            continue
        name = message.get("name")
        total += count_message_tokens(text_of(message.get("content")), str(message.get("role") or ""),
                                      name if isinstance(name, str) else None, model)
    return total
