"""Word banks for the synthetic corpus, loaded from `topic_bank.json` shipped with the package.

Each topic has three slot vocabularies (`a`, `b`, `c`, "|"-separated), user openers (`asks`), user
follow-ups (`follows`) and assistant sentences (`says`). Templates use {a}, {b}, {c}. Topics share
some words on purpose (real chats overlap), but each has its own vocabulary so they stay separable.
The banks are data, so they live in a data file; the generator compiles them once at import.
"""

from __future__ import annotations

import json
from importlib import resources

_DATA = json.loads(resources.files("kura_perf.corpus").joinpath("topic_bank.json").read_text(encoding="utf-8"))

TOPIC_BANK: dict[str, dict] = _DATA["topics"]
USER_GREETINGS: list[str] = _DATA["user_greetings"]
USER_CONTEXT: list[str] = _DATA["user_context"]
USER_FOLLOWUPS: list[str] = _DATA["user_followups"]
ASSISTANT_OPENERS: list[str] = _DATA["assistant_openers"]
ASSISTANT_FILLER: list[str] = _DATA["assistant_filler"]
ASSISTANT_CLOSERS: list[str] = _DATA["assistant_closers"]
