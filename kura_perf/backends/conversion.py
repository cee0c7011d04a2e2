"""Conversations <-> the stored conversations table (Parquet: messages as a list of structs)."""

from __future__ import annotations

import json

import pandas as pd

from kura_perf.corpus.types import Conversation, Message


def conversations_to_table(conversations: list[Conversation]) -> pd.DataFrame:
    return pd.DataFrame({
        "chat_id": [c.chat_id for c in conversations],
        "created_at": pd.to_datetime([c.created_at for c in conversations], utc=True),
        "topic": pd.array([c.topic for c in conversations], dtype="string"),
        "metadata": [json.dumps(c.metadata, sort_keys=True, default=str) for c in conversations],
        "messages": [[{"role": m.role, "content": m.content, "created_at": m.created_at.isoformat()}
                      for m in c.messages] for c in conversations],
    })


def conversations_from_table(table: pd.DataFrame) -> list[Conversation]:
    from datetime import datetime

    out = []
    topics = table["topic"].tolist()
    for chat_id, created, meta, messages, topic in zip(table["chat_id"], table["created_at"], table["metadata"],
                                                       table["messages"], topics):
        msgs = [Message(m["role"], m["content"], datetime.fromisoformat(m["created_at"])) for m in messages]
        out.append(Conversation(chat_id=chat_id, created_at=created.to_pydatetime(), messages=msgs,
                                metadata=json.loads(meta), topic=None if pd.isna(topic) else topic))
    return out

