"""Writing a Kura summaries checkpoint (summaries.jsonl) without Kura installed.

The format is what kura.checkpoints.jsonl.JSONLCheckpointManager writes: one
ConversationSummary.model_dump_json() per line, keys in the model's field order. Used to build the
shipped example (examples/checkpoint_summaries/) and test fixtures; a team's own checkpoint comes
from Kura itself.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Iterable

from kura_perf.files.atomic import atomic_write

# ConversationSummary's fields in Kura 0.5.4's order (GeneratedSummary's, then chat_id, metadata, embedding).
KURA_SUMMARY_KEYS = ("summary", "request", "topic", "languages", "task", "concerning_score", "user_frustration",
                     "assistant_errors", "chat_id", "metadata", "embedding")


def kura_summary_record(chat_id: str, fields: dict, metadata: dict | None = None, topic: str | None = None) -> dict:
    """One ConversationSummary as Kura dumps it; a field missing from `fields` is null, as Kura leaves it."""
    values = {**fields, "chat_id": chat_id, "metadata": metadata or {}, "topic": topic, "embedding": None}
    return {key: values.get(key) for key in KURA_SUMMARY_KEYS}


def write_summaries_checkpoint(records: Iterable[dict], path: str | os.PathLike) -> int:
    """Write ConversationSummary records as Kura's JSONL checkpoint, atomically; returns the count."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    count = 0

    def write(tmp: Path) -> None:
        nonlocal count
        with open(tmp, "w", encoding="utf-8", newline="\n") as out:
            for record in records:
                out.write(json.dumps(record, ensure_ascii=False, separators=(",", ":")) + "\n")
                count += 1

    atomic_write(path, write)
    return count
