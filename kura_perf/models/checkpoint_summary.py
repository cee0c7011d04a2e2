"""Summaries read from a Kura summaries checkpoint instead of made by a model.

A team that has run Kura on its own conversations has its LLM summaries in Kura's JSONL checkpoint
(`summaries.jsonl`: one ConversationSummary.model_dump_json() per line, as kura.checkpoints.jsonl's
JSONLCheckpointManager writes it). A profile with `summary_model = "checkpoint:<path>"` takes its
summaries from that file, so the later stages (embeddings, clusters, meta_clusters, projections) run
on real LLM summaries with no API access and no API bill.

Reading: the file is read once per summaries stage, streamed line by line; only the summaries of the
partition's chat_ids are kept (with their line numbers), so memory follows the partition, not the file.
Every line is checked, needed or not: a checkpoint with a broken line is a broken checkpoint.

Refused, each naming the file (and line and field where there is one):
- a line that is not a JSON object, has no string chat_id, or a field of the wrong type (what
  Kura's ConversationSummary allows: summary a string; request, task a string or null; languages,
  assistant_errors a list of strings or null; concerning_score, user_frustration an int 1-5 or null);
- a chat_id of the partition on two lines (which summary would be meant?); ids outside the partition
  are not held, so their repeats go unseen;
- a conversation of the partition with no summary: the first such chat_id in partition order.

Nulls (Kura leaves a field None when its LLM did not fill it) are mapped to the summaries table's
types by one rule, and counted in the stage record's extra (`nulls_filled`):
- request, task: null -> "" (no text);
- languages, assistant_errors: null -> [] (none named);
- concerning_score, user_frustration: null -> 1 (the bottom of Kura's 1-5 scale: no concern, no
  frustration reported).
Kura's own `topic` (the LLM's label) and `metadata` are not summary fields of the table and are not
read: the table and its embed_text are exactly what every other summary model produces.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence

from kura_perf.corpus.loaders import describe_json_value
from kura_perf.errors import InputDataError
from kura_perf.meter.api import ApiCounters
from kura_perf.models.protocols import SUMMARY_FIELDS, SelectsSummaries
from kura_perf.profiles.values import CHECKPOINT_PREFIX

_BOM = b"\xef\xbb\xbf"
# field -> (what Kura allows, the value a null becomes)
_OPTIONAL_TEXT = ("request", "task")
_OPTIONAL_LISTS = ("languages", "assistant_errors")
_OPTIONAL_SCORES = ("concerning_score", "user_frustration")
NULL_RULE = {**{f: "" for f in _OPTIONAL_TEXT}, **{f: [] for f in _OPTIONAL_LISTS}, **{f: 1 for f in _OPTIONAL_SCORES}}


def checkpoint_path(spec: str) -> str | None:
    """The path a `summary_model` value names, or None when it is not a checkpoint."""
    return spec[len(CHECKPOINT_PREFIX):] if spec.startswith(CHECKPOINT_PREFIX) else None


def resolve_checkpoint(spec: str) -> Path:
    """The checkpoint file, a relative path taken from the working directory (as data_file is)."""
    return Path(checkpoint_path(spec) or spec)


def check_checkpoint_file(path: Path) -> None:
    """Refuse, before any work, a checkpoint that is not there or not a regular file."""
    if not path.exists():
        raise InputDataError(path, None, None, "a Kura summaries checkpoint (summaries.jsonl)", got="no such file")
    if not path.is_file():
        raise InputDataError(path, None, None, "a Kura summaries checkpoint as a regular file",
                             got="a directory" if path.is_dir() else "not a regular file")


def parse_summary_line(record, path: Path, line: int) -> tuple[str, dict, list[str]]:
    """(chat_id, the table's summary fields, the names of fields that were null) of one checkpoint line."""
    if not isinstance(record, dict):
        raise InputDataError(path, line, None, "a JSON object (a Kura ConversationSummary) per line", got=describe_json_value(record))
    chat_id = record.get("chat_id")
    if not isinstance(chat_id, str) or not chat_id.strip():
        raise InputDataError(path, line, "chat_id", "a non-empty string",
                             got=describe_json_value(chat_id) if "chat_id" in record else "missing")
    summary = record.get("summary")
    if not isinstance(summary, str):
        raise InputDataError(path, line, "summary", "a string", got=describe_json_value(summary) if "summary" in record else "missing")
    fields, nulls = {"summary": summary}, []
    for name in SUMMARY_FIELDS[1:]:
        value = record.get(name)
        if value is None:
            fields[name] = list(NULL_RULE[name]) if isinstance(NULL_RULE[name], list) else NULL_RULE[name]
            nulls.append(name)
            continue
        if name in _OPTIONAL_TEXT:
            ok, expected = isinstance(value, str), "a string or null"
        elif name in _OPTIONAL_LISTS:
            ok = isinstance(value, list) and all(isinstance(item, str) for item in value)
            expected = "a list of strings or null"
        else:
            ok = isinstance(value, int) and not isinstance(value, bool) and 1 <= value <= 5
            expected = "an int from 1 to 5 or null"
        if not ok:
            raise InputDataError(path, line, name, expected, got=describe_json_value(value))
        fields[name] = list(value) if isinstance(value, list) else value
    return chat_id, fields, nulls


def read_summaries(path: Path, wanted: set[str]) -> tuple[dict[str, dict], dict]:
    """One streamed pass over the checkpoint: {chat_id: fields} for the wanted ids, and what was read."""
    found: dict[str, dict] = {}
    found_on: dict[str, int] = {}  # wanted chat_id -> its line
    nulls: dict[str, int] = {}
    lines = 0
    with open(path, "rb") as f:
        for line, raw in enumerate(f, start=1):
            if line == 1:
                raw = raw.removeprefix(_BOM)
            if not raw.strip():
                continue
            try:
                record = json.loads(raw.rstrip(b"\r\n"))  # a line cut short: "unterminated", not a control char
            except UnicodeDecodeError:
                raise InputDataError(path, line, None, "UTF-8 text", got="undecodable bytes") from None
            except json.JSONDecodeError as err:
                raise InputDataError(path, line, None, "one JSON object per line",
                                     got=f"invalid JSON: {err.msg.removesuffix(' at')} at column {err.colno}") from None
            except RecursionError:
                raise InputDataError(path, line, None, "a Kura ConversationSummary", got="JSON nested too deep") from None
            chat_id, fields, null_fields = parse_summary_line(record, path, line)
            lines += 1
            if chat_id in wanted:
                if chat_id in found_on:
                    raise InputDataError(path, line, "chat_id", "an id not used earlier in the checkpoint",
                                         got=f"{chat_id!r}, already on line {found_on[chat_id]}")
                found_on[chat_id] = line
                found[chat_id] = fields
                for name in null_fields:
                    nulls[name] = nulls.get(name, 0) + 1
    return found, {"checkpoint_summaries": lines, "nulls_filled": nulls}


class CheckpointSummaryModel(SelectsSummaries):
    """A SummaryModel over a Kura summaries checkpoint. select(chat_ids) reads the file once for the
    stage and returns the partition's summaries as a model of their own (dropped with the stage, so
    the backend, which lives for the whole run, holds nothing)."""

    def __init__(self, spec: str) -> None:
        self.name = spec
        self.path = resolve_checkpoint(spec)

    def select(self, chat_ids: Sequence[str]) -> "SelectedSummaries":
        check_checkpoint_file(self.path)
        found, info = read_summaries(self.path, set(chat_ids))
        missing = [c for c in chat_ids if c not in found]
        if missing:
            raise InputDataError(self.path, None, "chat_id", "a summary for every conversation of the partition",
                                 got=f"none for chat_id {missing[0]!r}, the first in partition order; "
                                     f"{len(missing)} of {len(chat_ids)} conversations have none")
        return SelectedSummaries(self.name, self.path, found,
                                 {"source": f"kura-checkpoint:{self.path.resolve()}", **info})

    def summarise(self, conversations) -> list[dict]:
        return self.select([c.chat_id for c in conversations]).summarise(conversations)

    @property
    def counters(self) -> ApiCounters:
        """No API calls: zero counters, so the record says 0 calls and $0 rather than unknown."""
        return ApiCounters()


class SelectedSummaries:
    """The summaries of one partition's conversations, read from the checkpoint; `read_info` says
    where they came from (for the stage record's extra)."""

    def __init__(self, name: str, path: Path, summaries: dict[str, dict], read_info: dict) -> None:
        self.name, self.path, self.read_info = name, path, read_info
        self._summaries = summaries

    def summarise(self, conversations) -> list[dict]:
        out = []
        for conversation in conversations:
            fields = self._summaries.get(conversation.chat_id)
            if fields is None:  # not among the chat_ids selected
                raise InputDataError(self.path, None, "chat_id", "a summary for every conversation of the partition",
                                     got=f"none for chat_id {conversation.chat_id!r}")
            out.append(fields)
        return out

    @property
    def counters(self) -> ApiCounters:
        return ApiCounters()
