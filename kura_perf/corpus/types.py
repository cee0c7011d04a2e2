"""Conversations as the pipeline sees them (mirrors kura.types.Conversation, without importing Kura)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

ROLES = ("user", "assistant")


@dataclass(slots=True)
class Message:
    role: str  # "user" | "assistant"
    content: str
    created_at: datetime


@dataclass(slots=True)
class Conversation:
    chat_id: str
    created_at: datetime
    messages: list[Message]
    metadata: dict = field(default_factory=dict)
    # Ground truth for quality scoring. Kept out of messages and metadata so it never
    # reaches the text that gets summarised or embedded.
    topic: str | None = None

    def text(self) -> str:
        return "\n".join(f"{m.role}: {m.content}" for m in self.messages)
