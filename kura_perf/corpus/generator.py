"""Synthetic chat conversations with known topics, so clustering quality can be scored.

Every conversation depends only on (seed, index): generating n and then k < n gives the same first k
conversations, so the scale partitions nest (the 1k set is the first 1k of the 100k set) and any
single conversation can be regenerated on its own.
"""

from __future__ import annotations

import functools
import math
import random
import re
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone

from kura_perf.corpus.topic_bank import (
    ASSISTANT_CLOSERS,
    ASSISTANT_FILLER,
    ASSISTANT_OPENERS,
    TOPIC_BANK,
    USER_CONTEXT,
    USER_FOLLOWUPS,
    USER_GREETINGS,
)
from kura_perf.corpus.types import Conversation, Message

TOPICS: list[str] = list(TOPIC_BANK)

MIN_TURNS, MAX_TURNS = 2, 8  # a turn is one user message followed by one assistant reply
_SENTENCES_PER_REPLY = (3, 6)
_BASE_TIME = datetime(2024, 1, 1, tzinfo=timezone.utc)
_YEAR_SECONDS = 365 * 24 * 3600
_MAX_INDEX = 2**32
_SLOTS = ("a", "b", "c")
_ARTICLE_BEFORE_SLOT = re.compile(r"\b([Aa])n? \{([abc])\}")
_LETTERS_SAID_WITH_VOWEL = set("AEFHILMNORSX")  # "an SQL", "an HOA", but "a VPN"


class _Template:
    """A sentence with {a}/{b}/{c} slots, compiled once so filling it is a single format_map.

    "a {b}" / "an {b}" become "{art_b} {b}" so the article agrees with the word chosen ("an online store").
    """

    __slots__ = ("text", "has_slots", "capitalize")

    def __init__(self, text: str):
        self.text = _ARTICLE_BEFORE_SLOT.sub(
            lambda m: "{%s_%s} {%s}" % ("Art" if m.group(1) == "A" else "art", m.group(2), m.group(2)), text
        )
        self.has_slots = "{" in text
        self.capitalize = text.startswith("{")

    def fill(self, values: dict[str, str]) -> str:
        if not self.has_slots:
            return self.text
        filled = self.text.format_map(values)
        return filled[0].upper() + filled[1:] if self.capitalize else filled


def _article(word: str) -> str:
    """English a/an for the vocabulary in the topic bank (acronyms go by how the letter is said)."""
    if word[:2].isupper() or (word[0].isupper() and len(word) > 1 and not word[1].isalpha()):
        return "an" if word[0] in _LETTERS_SAID_WITH_VOWEL else "a"
    lower = word.lower()
    if lower.startswith(("uni", "use", "usu", "eu", "one")):
        return "a"
    return "an" if lower[0] in "aeiou" else "a"


@functools.cache
def _strides(n: int) -> tuple[int, ...]:
    """Steps that visit every one of n items once: a cheap stand-in for shuffling them."""
    return tuple(step for step in range(1, n) if math.gcd(step, n) == 1) or (1,)


def _visit_order(items: list, rand) -> list:
    """The items in a per-conversation order (random start, random coprime stride)."""
    n = len(items)
    start, step = int(rand() * n), _pick(_strides(n), rand)
    return [items[(start + k * step) % n] for k in range(n)]


class _Topic:
    """A topic compiled for speed: each vocabulary word comes with its article already worked out."""

    __slots__ = ("name", "vocab", "asks", "follows", "says")

    def __init__(self, name: str, spec: dict):
        self.name = name
        self.vocab = tuple(
            (slot, f"art_{slot}", f"Art_{slot}", tuple((w, _article(w), _article(w).capitalize()) for w in spec[slot].split("|")))
            for slot in _SLOTS
        )
        self.asks = [_Template(t) for t in spec["asks"]]
        self.follows = [_Template(t) for t in spec["follows"]]
        self.says = [_Template(t) for t in spec["says"]]


_COMPILED = [_Topic(name, spec) for name, spec in TOPIC_BANK.items()]
_SHARED_FOLLOWUPS = [_Template(t) for t in USER_FOLLOWUPS]


@functools.cache
def topic_subset(topic_count: int | None) -> tuple[_Topic, ...]:
    """The topics a corpus draws from: all of the bank, or `topic_count` of them spread evenly over it.

    Fewer topics means larger ones (n / topic_count conversations each), a corpus unlike the default
    48-topic one, so clustering settings can be checked on more than one shape of data.
    """
    total = len(_COMPILED)
    if topic_count is None or topic_count == total:
        return tuple(_COMPILED)
    if not 1 <= topic_count <= total:
        raise ValueError(f"topic_count must be in [1, {total}], got {topic_count}")
    return tuple(_COMPILED[(i * total) // topic_count] for i in range(topic_count))


def _pick(items, rand):
    return items[int(rand() * len(items))]


def _rng_for(seed: int, index: int) -> random.Random:
    """One cheap, independent stream per conversation (seed folded to 64 bits, index below 2**32)."""
    return random.Random(((seed & 0xFFFF_FFFF_FFFF_FFFF) << 32) | index)


def _slot_values(topic: _Topic, rand) -> dict[str, str]:
    """The words this conversation is about: chosen once, so every message stays on the same subject."""
    values = {}
    for slot, art_key, cap_art_key, words in topic.vocab:
        values[slot], values[art_key], values[cap_art_key] = words[int(rand() * len(words))]
    return values


def _first_user_message(topic: _Topic, values: dict[str, str], rand) -> str:
    parts = []
    if rand() < 0.4:
        parts.append(_pick(USER_GREETINGS, rand))
    parts.append(_pick(topic.asks, rand).fill(values))
    if rand() < 0.5:
        parts.append(_pick(USER_CONTEXT, rand))
    return " ".join(parts)


def _assistant_message(says: list[_Template], cursor: int, values: dict[str, str], rand) -> tuple[str, int]:
    """A reply from the next few topic sentences (ordered once per conversation, so replies rarely repeat)."""
    parts = []
    if rand() < 0.7:
        parts.append(_pick(ASSISTANT_OPENERS, rand))
    if rand() < 0.25:
        parts.append(_pick(ASSISTANT_FILLER, rand))
    low, high = _SENTENCES_PER_REPLY
    count = low + int(rand() * (high - low + 1))
    n_says = len(says)
    for offset in range(count):
        parts.append(says[(cursor + offset) % n_says].fill(values))
    if rand() < 0.5:
        parts.append(_pick(ASSISTANT_CLOSERS, rand))
    return " ".join(parts), cursor + count


def generate_conversation(index: int, seed: int = 0, topic_count: int | None = None) -> Conversation:
    """The conversation at position `index` of the corpus for `seed`; independent of every other index.

    `topic_count` draws from only that many topics of the bank (see topic_subset); None: all of them.
    """
    if not 0 <= index < _MAX_INDEX:
        raise ValueError(f"index must be in [0, {_MAX_INDEX}), got {index}")
    rand = _rng_for(seed, index).random
    topics = topic_subset(topic_count)
    topic = topics[int(rand() * len(topics))]
    values = _slot_values(topic, rand)
    says = _visit_order(topic.says, rand)
    # Follow-ups: the topic's own plus two generic ones, in a per-conversation order, so they rarely repeat.
    follows = _visit_order(topic.follows + [_pick(_SHARED_FOLLOWUPS, rand), _pick(_SHARED_FOLLOWUPS, rand)], rand)
    cursor = 0

    created_at = _BASE_TIME + timedelta(seconds=int(rand() * _YEAR_SECONDS))
    moment = created_at
    turns = MIN_TURNS + int(rand() * (MAX_TURNS - MIN_TURNS + 1))
    messages: list[Message] = []
    for turn in range(turns):
        if turn:
            moment += timedelta(seconds=20 + int(rand() * 600))  # the user reads, then writes back
            user_text = follows[(turn - 1) % len(follows)].fill(values)
        else:
            user_text = _first_user_message(topic, values, rand)
        messages.append(Message("user", user_text, moment))
        moment += timedelta(seconds=2 + int(rand() * 40))  # model latency
        reply, cursor = _assistant_message(says, cursor, values, rand)
        messages.append(Message("assistant", reply, moment))

    return Conversation(
        chat_id=f"conv-{seed}-{index:07d}",
        created_at=created_at,
        messages=messages,
        metadata={"source": "synthetic", "seed": seed},
        topic=topic.name,
    )


def iter_conversations(n: int, seed: int = 0, start: int = 0, topic_count: int | None = None) -> Iterator[Conversation]:
    """Conversations start..start+n-1, one at a time (for exports larger than memory)."""
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    for index in range(start, start + n):
        yield generate_conversation(index, seed, topic_count)


def generate_conversations(n: int, seed: int = 0, topic_count: int | None = None) -> list[Conversation]:
    """`n` synthetic conversations: 2-8 turns (user + assistant message each), about 2-5 KB of text.

    Deterministic in (seed, index): the first k of generate_conversations(n) equal
    generate_conversations(k). `Conversation.topic` holds the ground-truth topic name (one of TOPICS);
    it never appears in metadata, and topic names are never written into the text.
    """
    return list(iter_conversations(n, seed, topic_count=topic_count))
