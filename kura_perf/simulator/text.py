"""Reading a chat prompt and writing plausible text from it, so answers vary with the input.

Prompts wrap their payload (a conversation, a cluster's member summaries) in XML-ish tags, as Kura's
prompts do; instructions stay outside. So the payload is the text inside tags when there is any,
otherwise the last user message. Salient words are the most frequent non-stop-words of the payload.

Answers have the lengths Kura's prompts ask for (kura/summarisation.py, kura/cluster.py,
kura/meta_cluster.py, kura/types/), so completion tokens, and the time and money they cost, are those of
a real answer (ANSWER_WORDS): a conversation summary "at most two sentences ... at most 30 words"
(28 words: answers tend to use most of a limit); a cluster description "a clear, precise, two-sentence
description" with no word limit (40 words: two 20-word sentences); a request "The user's overall
request for the assistant is to ..." and a task "The task is to ..." (one sentence each: 20 and 12
words); a cluster or candidate name "at most ten words" (the names below have 4: a short imperative
phrase, as Kura's examples 'Brainstorm ideas for a birthday party' are); a slug "a three-word
snake_case summary" (3).
"""

from __future__ import annotations

import re
import zlib
from collections import Counter
from dataclasses import dataclass
from functools import cached_property
from typing import Any

_TAGGED = re.compile(r"<([A-Za-z_][\w-]*)[^>]*>(.*?)</\1>", re.DOTALL)
_WORD = re.compile(r"[A-Za-z][A-Za-z0-9+#'-]*[A-Za-z0-9+#]|[A-Za-z]")
_PLACEHOLDER = re.compile(r"^\[[^\]]*\]$")  # an answer-format slot: <summary> [Insert your summary here] </summary>
_ROLE_PREFIX = re.compile(r"^\s*(user|human|assistant|ai|system)\s*:\s*", re.IGNORECASE)
_STOP_WORDS = frozenset(
    """
    a about above after again all also am an and any are as at be because been before being
    below between both but by can could did do does doing done down during each else even ever
    every few for from get gets getting give go going got had has have having he her here him his
    how however i i'd i'll i'm i've if in into is isn't it it's its just know let like make many
    may me might more most much must my need needs no nor not now of off on once one only or other
    our out over own please quite rather really right same say see she should so some something
    such sure take than thank thanks that that's the their them then there these they thing things
    think this those though through to too try under until up us use used using very via want wants
    was way we well were what what's when where which while who why will with within without would
    yes yet you you're your hi hello hey okay ok can't don't doesn't won't didn't help user
    asks asked ask user's users assistant none human ai conversation conversations summary summaries cluster clusters statement
    statements example examples
    """.split()
)


# Words per answer field, from what Kura's prompts ask for (see the module docstring).
ANSWER_WORDS = {"summary": 28, "description": 40, "request": 20, "task": 12}
_GROUP_PROMPT = re.compile(r"\b(group|cluster|statements)\b", re.IGNORECASE)


def content_text(content: Any) -> str:
    """Text of a message's content: a string, or a list of parts of which the text ones count."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = [p.get("text", "") for p in content if isinstance(p, dict) and p.get("type") in ("text", "input_text")]
        return "\n".join(p for p in parts if isinstance(p, str))
    return ""


def is_name_field(field: str) -> bool:
    """`name`, `title`, `label` and fields ending in them (`cluster_name`, `candidate_cluster_name`)."""
    key = field.lower()
    return key in ("name", "title", "label") or key.endswith(("_name", "_title", "_label"))


def stable_hash(*parts: str) -> int:
    return zlib.crc32("\x1f".join(parts).encode("utf-8"))


def _snippet(text: str, max_words: int) -> str:
    words = text.split()
    cut = " ".join(words[:max_words])
    return cut.rstrip(".,;:!?") + ("..." if len(words) > max_words else "")


def _unwrap(body: str) -> str:
    """A tagged body with the tags nested in it replaced by their text (`<cluster>A</cluster>` -> `A`)."""
    for _ in range(8):
        unwrapped = _TAGGED.sub(lambda m: m.group(2).strip(), body)
        if unwrapped == body:
            break
        body = unwrapped
    return body


@dataclass(frozen=True)
class PromptView:
    """The parts of a prompt that answers are built from: the payload (text inside the outermost
    tags, nested tags unwrapped) and the raw prompt (every message, instructions included), in which
    pick-one options and requested counts are looked up."""

    payload: str
    raw: str = ""

    @classmethod
    def from_messages(cls, messages: list[dict]) -> "PromptView":
        texts = [(m.get("role", ""), content_text(m.get("content"))) for m in messages if isinstance(m, dict)]
        raw = "\n".join(t for _, t in texts)
        tagged = [_unwrap(body).strip() for _, text in texts for _, body in _TAGGED.findall(text)]
        tagged = [t for t in tagged if t and not _PLACEHOLDER.match(t)]
        if tagged:
            return cls("\n".join(tagged), raw)
        user = [text for role, text in texts if role == "user" and text.strip()]
        return cls(user[-1] if user else raw, raw)

    @property
    def prompt(self) -> str:
        return self.raw or self.payload

    @cached_property
    def instructions(self) -> str:
        """The prompt without its tagged payload: what the caller asks for, not the data it sends."""
        return _TAGGED.sub(" ", self.prompt)

    @cached_property
    def ranked_words(self) -> list[str]:
        """Non-stop-words of the payload, most frequent first (ties: first seen first)."""
        words = [w.lower() for w in _WORD.findall(self.payload)]
        counts = Counter(w for w in words if len(w) > 2 and w not in _STOP_WORDS)
        first_seen = {w: i for i, w in reversed(list(enumerate(words)))}
        return sorted(counts, key=lambda w: (-counts[w], first_seen[w]))

    @cached_property
    def salient(self) -> list[str]:
        return self.ranked_words[:8]

    @cached_property
    def first_request(self) -> str:
        """The first user turn (or first line) with its role prefix removed."""
        lines = [ln for ln in self.payload.splitlines() if ln.strip()]
        for line in lines:
            match = _ROLE_PREFIX.match(line)
            if match and match.group(1).lower() in ("user", "human"):
                return line[match.end():].strip()
        return _ROLE_PREFIX.sub("", lines[0]).strip() if lines else ""

    def topic(self, n: int = 3) -> str:
        words = self.salient[:n]
        if not words:
            return "general questions"
        return words[0] if len(words) == 1 else ", ".join(words[:-1]) + " and " + words[-1]

    def seed(self, field: str) -> int:
        return stable_hash(self.payload, field)

    # --- text for a named string field -------------------------------------------------------
    def name(self, index: int = 0) -> str:
        """A short name; names 1, 2, ... use the next most frequent words, so a list of names is varied."""
        pool = self.ranked_words
        words = pool[3 * index: 3 * index + 3] if index else pool[:3]
        if not words and pool:
            words = [pool[(index + k) % len(pool)] for k in range(min(3, len(pool)))]
        return " ".join(w.capitalize() for w in words) + " requests" if words else "General assistance requests"

    def slug(self) -> str:
        words = [re.sub(r"[^a-z0-9]+", "", w) for w in self.salient[:3]]
        return "_".join(w for w in words if w) or "general_assistance_requests"

    @cached_property
    def describes_a_group(self) -> bool:
        """A prompt naming a group of texts (a cluster), not summarising one conversation."""
        return bool(_GROUP_PROMPT.search(self.instructions))

    def sized(self, text: str, words: int) -> str:
        """`text` cut or extended to `words` words: extended with sentences of the payload's next most
        salient words, so a longer answer still says something about the input."""
        have = text.split()
        if len(have) >= words:
            return " ".join(have[:words]).rstrip(".,;:!?") + "."
        pool = self.ranked_words[3:] or self.ranked_words or ["the", "same", "request"]
        out, i = text.rstrip(), 0
        while len(out.split()) < words:
            chunk = [pool[(i + k) % len(pool)] for k in range(4)]
            out += f" It also covers {', '.join(chunk[:-1])} and {chunk[-1]}."
            i += 4
        return self.sized(out, words) if len(out.split()) > words else out

    def text_for(self, field: str) -> str:
        key = field.lower()
        request = _snippet(self.first_request, 18) or "get help"
        if is_name_field(key):
            return self.name()
        if "slug" in key:
            return self.slug()
        if "summary" in key and not self.describes_a_group:
            return self.sized(f"The user asks about {self.topic()}. Their request: {request}", ANSWER_WORDS["summary"])
        if "request" in key:
            return self.sized(f"The user's overall request for the assistant is to help with {self.topic()}: "
                              f"{request}", ANSWER_WORDS["request"])
        if "task" in key:
            return self.sized(f"The task is to assist with {self.topic(2)}", ANSWER_WORDS["task"])
        if "description" in key or "summary" in key:  # a cluster's description (Kura calls it `summary`)
            return self.sized(
                f"Users asked the assistant for help with {self.topic(4)}. "
                f"A typical request: {_snippet(self.first_request, 12) or 'general help'}",
                ANSWER_WORDS["description"])
        if "language" in key:
            return "english"
        if "error" in key:
            return "none"
        if "reason" in key or "explanation" in key or "rationale" in key:
            return f"The conversation centres on {self.topic()}."
        return _snippet(self.payload.replace("\n", " "), 12) or field

    def plain_answer(self) -> str:
        """A plain-text chat answer."""
        request = _snippet(self.first_request, 20) or "get general help"
        return f"This conversation is about {self.topic()}. The user asks: {request}"
