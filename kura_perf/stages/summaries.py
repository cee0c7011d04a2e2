"""Stage 1: conversations -> one validated summary row each, plus the text the next stage embeds."""

from __future__ import annotations

from typing import Callable, Sequence

import pandas as pd

from kura_perf.corpus.types import Conversation
from kura_perf.errors import StageError
from kura_perf.models.protocols import SUMMARY_FIELDS, SummarisesWithProgress, SummaryModel

Progress = Callable[[int, int], None]

SUMMARY_COLUMNS = ("chat_id", *SUMMARY_FIELDS, "embed_text")
_TEXT_FIELDS = ("summary", "request", "task")
_SCORE_FIELDS = ("concerning_score", "user_frustration")
_LIST_FIELDS = ("languages", "assistant_errors")


EMBED_LAYOUTS = ("summary", "kura-template")


def embed_text(fields: dict, layout: str = "kura-template") -> str:
    """What gets embedded for a conversation: the summary text alone ("summary", the reference's
    choice) or Kura's str(ConversationSummary) layout of the summary fields ("kura-template").

    Built from the model's output alone, never from the conversation's topic (ground truth) or
    metadata, so clustering quality cannot be inflated by leaked labels.
    """
    if layout == "summary":
        return str(fields["summary"])
    if layout != "kura-template":
        raise StageError(f"summaries: embed_text layout '{layout}'; expected one of {', '.join(EMBED_LAYOUTS)}")
    return (
        f"<summary>{fields['summary']}</summary>\n"
        f"<request>{fields['request']}</request>\n"
        f"<task>{fields['task']}</task>\n"
        f"<languages>{fields['languages']}</languages>\n"
        f"<assistant_errors>{fields['assistant_errors']}</assistant_errors>"
    )


def summarise(
    conversations: Sequence[Conversation],
    model: SummaryModel,
    batch_size: int = 256,
    progress: Progress | None = None,
    embed_layout: str = "kura-template",
) -> pd.DataFrame:
    """Summarise in batches of `batch_size`; progress(done, total) after each batch; embed_text in
    `embed_layout` (see embed_text). A model that reports its own progress (SummarisesWithProgress: an
    adaptive API client) gets chunks of at least its `input_chunk`, so the batch never caps its in-flight."""
    if batch_size < 1:
        raise StageError(f"summaries: batch_size must be at least 1 (got {batch_size})")
    total = len(conversations)
    rows: list[dict] = []
    streams = isinstance(model, SummarisesWithProgress) and model.summarises_with_progress
    if streams:
        batch_size = max(batch_size, model.input_chunk)
    for start in range(0, total, batch_size):
        batch = conversations[start : start + batch_size]
        if streams:
            outputs = model.summarise(batch, progress=_offset(progress, start, total))
        else:
            outputs = model.summarise(batch)
        if not isinstance(outputs, list) or len(outputs) != len(batch):
            got = len(outputs) if hasattr(outputs, "__len__") else type(outputs).__name__
            raise StageError(
                f"summaries: model '{model.name}' returned {got} summaries for a batch of {len(batch)} "
                f"conversations (first chat_id {batch[0].chat_id})"
            )
        for conversation, fields in zip(batch, outputs):
            _validate(conversation.chat_id, fields, model.name)
            row = {"chat_id": conversation.chat_id}
            row.update({name: fields[name] for name in SUMMARY_FIELDS})
            row["embed_text"] = embed_text(fields, embed_layout)
            rows.append(row)
        if progress is not None:
            progress(start + len(batch), total)
    frame = pd.DataFrame(rows, columns=list(SUMMARY_COLUMNS))
    for name in _SCORE_FIELDS:
        frame[name] = frame[name].astype("int64")
    return frame


def _offset(progress: Progress | None, start: int, total: int) -> Progress | None:
    """A chunk's progress as the whole input's."""
    if progress is None:
        return None
    return lambda done, _chunk_total: progress(start + done, total)


def _validate(chat_id: str, fields: object, model_name: str) -> None:
    def fail(field: str, expected: str, got: object) -> StageError:
        shown = repr(got)
        shown = shown if len(shown) <= 80 else shown[:77] + "..."
        return StageError(
            f"summaries: model '{model_name}', chat_id {chat_id}, field '{field}': expected {expected}, got {shown}"
        )

    if not isinstance(fields, dict):
        raise fail("<summary>", "a dict of summary fields", fields)
    missing = [name for name in SUMMARY_FIELDS if name not in fields]
    if missing:
        raise fail(missing[0], "the field to be present", "nothing")
    extra = sorted(set(fields) - set(SUMMARY_FIELDS))
    if extra:  # an unexpected key (e.g. 'topic') could carry ground truth into later stages
        raise fail(extra[0], f"only the fields {', '.join(SUMMARY_FIELDS)}", fields[extra[0]])
    for name in _TEXT_FIELDS:
        if not isinstance(fields[name], str):
            raise fail(name, "a string", fields[name])
    for name in _SCORE_FIELDS:
        value = fields[name]
        if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 5:
            raise fail(name, "an int from 1 to 5", value)
    for name in _LIST_FIELDS:
        value = fields[name]
        if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
            raise fail(name, "a list of strings", value)
