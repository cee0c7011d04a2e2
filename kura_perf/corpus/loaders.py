"""Reading conversation files (Kura dumps, OpenAI and ShareGPT JSONL) and writing Kura JSONL.

A load test is only as good as its input, so loading is strict by default: the first bad record
raises an InputDataError that names the file, the 1-based line, the field and what was expected.
`lenient=True` skips bad records but counts and reports them; a load never comes back silently
partial. JSONL is streamed line by line; a JSON list has to be read whole (use JSONL for huge sets).

Record formats (`format="auto"` picks one per file from the first valid record):

* kura: {"chat_id", "created_at", "messages": [{"created_at", "role", "content"}], "metadata"?}
  as Kura's Conversation.model_dump(mode="json") writes it; roles are "user"/"assistant".
* openai: {"messages": [{"role", "content"}], "id"?, "created_at"?}. "system"/"developer" messages
  are dropped (instructions, not conversation, and Kura's Message has no such role); "tool" and
  "function" messages are rejected, since their text is not chat. Content may be a string or a
  list of {"type": "text", "text"} parts.
* sharegpt: {"conversations": [{"from", "value"}], "id"?, "created_at"?}. "human"/"user" map to
  user, "gpt"/"chatgpt"/"assistant" to assistant, "system" is dropped, anything else is rejected.

Any format may carry an explicit ground-truth "topic" string, read into Conversation.topic (a "label"
field is not treated as ground truth). Without an id, OpenAI/ShareGPT records get the stable id
"<file stem>:<line>" (JSONL) or "<file stem>:item-<index>" (JSON list; the stem of chats.jsonl.gz is
"chats"); without created_at, a fixed
date plus that line or index in seconds (messages one second apart). Naive timestamps are taken as
UTC. Empty or whitespace-only message text is rejected (it usually means a broken export: an image,
a tool call), as is a chat_id used twice in one file.

Errors in a JSON list also name the 0-based item index in the field ("[3].messages[0].role"), since
such lists are often written on a single line.

Only regular files are read: a FIFO, a device or a socket is refused before it is opened (opening a
FIFO for reading waits for a writer, for ever). gzip-compressed files are read transparently
(`.jsonl.gz`, `.json.gz`, or gzip under any name: recognised by its magic bytes, not its name; JSONL
is decompressed as it is streamed); line numbers are those of the uncompressed text. `write_conversations_jsonl` writes gzip when
the name ends in `.gz`.

JSON nested deeper than MAX_JSON_DEPTH (100) levels is refused, naming the file and line (skipped and
counted under lenient): real chat exports nest fewer than 10 levels (record, messages, message,
content parts), and Python's JSON decoder would otherwise die of a RecursionError a few hundred levels
down. The depth is checked on the raw text, without recursion, and only for a record that holds at
least MAX_JSON_DEPTH brackets (a count at C speed), so ordinary records cost nothing extra.
"""

from __future__ import annotations

import itertools
import json
import os
import re
from collections.abc import Iterable, Iterator
from contextlib import closing
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, NoReturn

from kura_perf.corpus.files import (
    GZIP_ERRORS,
    GZIP_SUFFIX,
    MAX_JSON_DEPTH,
    check_conversation_file,
    depth_over_limit,
    gzip_problem,
    is_gzip,
    open_binary,
    open_text_writer,
    plain_stem,
    too_deep,
    value_end,
)
from kura_perf.corpus.types import ROLES, Conversation, Message
from kura_perf.errors import InputDataError, KuraPerfError
from kura_perf.files.atomic import atomic_write

FORMATS = ("auto", "kura", "openai", "sharegpt")
MAX_PROBLEMS = 100

_WHITESPACE = re.compile(r"[ \t\n\r]*")
_SURROGATE = re.compile("[\udc80-\udcff]")  # undecodable bytes, as kept by the surrogateescape handler
_BOM = b"\xef\xbb\xbf"
_fromisoformat = datetime.fromisoformat
_UNDATED_BASE = datetime(2024, 1, 1, tzinfo=timezone.utc)
_OPENAI_DROPPED_ROLES = {"system", "developer"}
_SHAREGPT_ROLES = {"human": "user", "user": "user", "gpt": "assistant", "chatgpt": "assistant", "assistant": "assistant"}
_SHAREGPT_DROPPED = {"system"}


@dataclass
class LoadResult:
    """What a load produced, including what it had to leave out (never a silent partial load)."""

    conversations: list[Conversation]
    skipped: int  # invalid records skipped (lenient mode only)
    problems: list[str]  # messages for the skipped records, the first MAX_PROBLEMS of them
    source: str
    available: int  # valid records found; the file's total only if `complete`
    format: str = "kura"  # the record format that was read
    complete: bool = True  # False when reading stopped early because `limit` was reached
    container: str = "jsonl"  # "jsonl" or "json-list"


class NotEnoughConversations(InputDataError):
    """The file holds fewer valid conversations than the scale asks for."""

    def __init__(self, path, available: int, needed: int, skipped: int = 0):
        self.path, self.line, self.field = path, None, None
        self.expected, self.got = f"at least {needed} valid conversations", available
        self.available, self.needed = available, needed
        skipped_note = f" ({skipped} invalid records skipped)" if skipped else ""
        KuraPerfError.__init__(
            self,
            f"{path}: the file has {available} valid conversations{skipped_note} but the scale needs {needed};"
            " use a larger file or a smaller scale, or set allow_short_data = true in the profile"
            " (allow_short=True when calling load_conversations) to run with what there is",
        )


# ----------------------------------------------------------------------------------------------
# Public API


def load_conversations(
    path: str | os.PathLike,
    limit: int | None = None,
    lenient: bool = False,
    format: str = "auto",
    allow_short: bool = False,
) -> LoadResult:
    """Read conversations from `path`, keeping the first `limit` valid ones (all if None).

    Raises InputDataError on the first bad record (or, with lenient=True, only when nothing valid
    remains), on a missing or empty file, and NotEnoughConversations when the file has fewer than
    `limit` valid conversations unless allow_short=True. Reading stops once `limit` are found.
    """
    if format not in FORMATS:
        raise KuraPerfError(f"unknown conversation format '{format}'; expected one of {', '.join(FORMATS)}")
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
        raise KuraPerfError(f"limit must be a positive integer or None, got {limit!r}")

    path = Path(path)
    container, records = _open_records(path)
    conversations: list[Conversation] = []
    problems: list[str] = []
    skipped = 0
    seen_ids: dict[str, int] = {}
    record_format = None if format == "auto" else format
    complete = True
    n_records = 0

    with closing(records):
        for line, index, record in records:
            n_records += 1
            try:
                conversation, this_format = _to_conversation(record, path, line, index, record_format, seen_ids)
            except InputDataError as err:
                if not lenient:
                    raise
                skipped += 1
                if len(problems) < MAX_PROBLEMS:
                    problems.append(str(err))
                continue
            record_format = this_format
            seen_ids[conversation.chat_id] = line
            conversations.append(conversation)
            if limit is not None and len(conversations) >= limit:
                complete = False
                break

    if n_records == 0:
        raise InputDataError(path, None, None, "at least one conversation record", got="no records: an empty file or list")
    if not conversations:
        raise InputDataError(
            path, None, None, "at least one valid conversation",
            got=f"none of {n_records} records were valid; first problem: {problems[0]}",
        )
    if limit is not None and len(conversations) < limit and not allow_short:
        raise NotEnoughConversations(path, len(conversations), limit, skipped)

    return LoadResult(
        conversations=conversations,
        skipped=skipped,
        problems=problems,
        source=str(path),
        available=len(conversations),
        format=record_format or "kura",
        complete=complete,
        container=container,
    )


def _to_conversation(
    record: Any, path: Path, line: int, index: int | None, record_format: str | None, seen_ids: dict[str, int]
) -> tuple[Conversation, str]:
    """One record as a Conversation (and the format it was read as), or an error naming where it went wrong."""
    try:
        if isinstance(record, InputDataError):
            raise record
        this_format = record_format or _detect_format(record, path, line)
        conversation = _PARSERS[this_format](record, path, line, index)
        _check_unique(conversation.chat_id, seen_ids, path, line)
        return conversation, this_format
    except InputDataError as err:
        if index is None:
            raise
        raise _within_list_item(err, index) from None


def write_conversations_jsonl(
    conversations: Iterable[Conversation], path: str | os.PathLike, include_topic: bool = True
) -> int:
    """Write Kura's record format, one conversation per line, atomically; returns the count written.

    The ground-truth `topic` is written as an extra top-level key (Kura's model ignores unknown keys)
    so a round trip keeps it; include_topic=False leaves it out. A name ending in '.gz' is written
    gzip-compressed (and load_conversations reads it back as it is).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    count = 0

    def write(tmp: Path) -> None:
        nonlocal count
        with open_text_writer(tmp, compressed=path.name.endswith(GZIP_SUFFIX)) as out:
            for conversation in conversations:
                out.write(json.dumps(_kura_record(conversation, include_topic), ensure_ascii=False))
                out.write("\n")
                count += 1

    atomic_write(path, write)
    return count


# ----------------------------------------------------------------------------------------------
# Files to (line, record) pairs


def _open_records(path: Path) -> tuple[str, Iterator[tuple[int, int | None, Any]]]:
    """Pick the container from the first non-blank byte: '[' is a JSON list, anything else JSONL.

    Only a regular file is opened (check_conversation_file looks with stat() first); gzip is
    recognised by its magic bytes and read through, whatever the file is called."""
    check_conversation_file(path)
    try:
        compressed = is_gzip(path)
        with open_binary(path, compressed) as f:
            head = f.read(4096).removeprefix(_BOM).lstrip(b" \t\r\n")
            while not head:  # skip leading blank space of any length, then look at one byte
                chunk = f.read(65536)
                if not chunk:
                    break
                head = chunk.lstrip(b" \t\r\n")
    except PermissionError:
        raise InputDataError(path, None, None, "a readable conversation file", got="permission denied") from None
    except GZIP_ERRORS as exc:  # broken before its first record: no line to name
        raise gzip_problem(path, None, exc) from None

    first = head[:1]
    if not first:
        raise InputDataError(path, None, None, "conversations as JSONL or a JSON list", got="an empty file")
    if first == b"[":
        return "json-list", _json_list_records(path, compressed)
    return "jsonl", _jsonl_records(path, compressed)


def _numbered_lines(path: Path, compressed: bool) -> Iterator[tuple[int, bytes]]:
    """(1-based line, raw bytes) of the file's (uncompressed) text; a gzip stream that breaks off is
    an error at the line it broke in."""
    with open_binary(path, compressed) as f:
        line = 0
        lines = iter(f)
        while True:
            try:
                raw = next(lines)
            except StopIteration:
                return
            except GZIP_ERRORS as exc:
                raise gzip_problem(path, line + 1, exc) from None
            line += 1
            yield line, raw


def _jsonl_records(path: Path, compressed: bool = False) -> Iterator[tuple[int, None, Any]]:
    """Yield (line, None, object) per non-blank line; a line that is not a JSON object yields an error instead."""
    for line, raw in _numbered_lines(path, compressed):
        if line == 1:
            raw = raw.removeprefix(_BOM)
        if not raw.strip():
            continue
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as err:
            yield line, None, _undecodable_line(path, line, raw, err)
            continue
        depth = depth_over_limit(text)
        if depth is not None:
            yield line, None, too_deep(path, line, depth)
            continue
        try:
            record = json.loads(text)
        except json.JSONDecodeError as err:
            yield line, None, InputDataError(path, line, None, "one JSON object per line", got=_json_problem(err))
            continue
        except RecursionError:  # not reached after the depth check; kept so no decoder limit escapes unnamed
            yield line, None, too_deep(path, line, MAX_JSON_DEPTH + 1)
            continue
        if not isinstance(record, dict):
            yield line, None, InputDataError(path, line, None, "a JSON object per line", got=describe_json_value(record))
            continue
        yield line, None, record


def _json_problem(err: json.JSONDecodeError) -> str:
    """'invalid JSON: Invalid control character at column 5' (some of json's messages end in 'at' already)."""
    return f"invalid JSON: {err.msg.removesuffix(' at')} at column {err.colno}"


def _undecodable_line(path: Path, line: int, raw: bytes, err: UnicodeDecodeError) -> InputDataError:
    """Name the field holding the bad bytes when the line is otherwise valid JSON."""
    got = f"byte 0x{raw[err.start]:02x} at column {err.start + 1}"
    text = raw.decode("utf-8", "surrogateescape")
    try:
        field_name = None if depth_over_limit(text) else _undecodable_field(json.loads(text))
    except (json.JSONDecodeError, RecursionError):
        field_name = None
    return InputDataError(path, line, field_name, "UTF-8 text", got=got)


def _json_list_records(path: Path, compressed: bool = False) -> Iterator[tuple[int, int, Any]]:
    """Yield (line where the item starts, item index, item) for each item of a top-level JSON list.

    Items are decoded one at a time so each gets a line number (and errors name the item index too,
    since a list is often written on one line). A structural error (a broken bracket) ends the load
    even in lenient mode: nothing after it can be located reliably.
    """
    try:
        with open_binary(path, compressed) as f:
            raw = f.read().removeprefix(_BOM)
    except GZIP_ERRORS as exc:
        raise gzip_problem(path, None, exc) from None
    try:
        text, undecodable = raw.decode("utf-8"), False
    except UnicodeDecodeError:
        text, undecodable = raw.decode("utf-8", "surrogateescape"), True
    del raw

    decoder = json.JSONDecoder()
    pos = _WHITESPACE.match(text, 0).end() + 1  # just past '['
    line, counted_to = 1, 0

    def line_at(offset: int) -> int:
        nonlocal line, counted_to
        line += text.count("\n", counted_to, offset)
        counted_to = offset
        return line

    pos = _WHITESPACE.match(text, pos).end()
    if text.startswith("]", pos):
        _check_trailing(text, pos + 1, path, line_at)
        return
    for index in itertools.count():
        pos = _WHITESPACE.match(text, pos).end()
        try:
            item, end = decoder.raw_decode(text, pos)
            depth = depth_over_limit(text, pos, end)
        except json.JSONDecodeError as err:
            raise InputDataError(path, err.lineno, None, "a valid JSON list", got=_json_problem(err)) from None
        except RecursionError:  # too deep for the decoder: find its end without decoding, to skip it
            item, end = None, value_end(text, pos)
            if end is None:
                raise InputDataError(path, line_at(pos), f"[{index}]", "a valid JSON list", got="a list item that never closes") from None
            depth = depth_over_limit(text, pos, end)
        item_line = line_at(pos)
        if depth is not None:
            yield item_line, index, too_deep(path, item_line, depth)
        elif undecodable and _SURROGATE.search(text, pos, end):
            yield item_line, index, InputDataError(path, item_line, _undecodable_field(item), "UTF-8 text", got="bytes that are not UTF-8")
        elif not isinstance(item, dict):
            yield item_line, index, InputDataError(path, item_line, None, "a JSON object per list item", got=describe_json_value(item))
        else:
            yield item_line, index, item
        pos = _WHITESPACE.match(text, end).end()
        separator = text[pos : pos + 1]
        if separator == ",":
            pos += 1
        elif separator == "]":
            _check_trailing(text, pos + 1, path, line_at)
            return
        else:
            raise InputDataError(path, line_at(pos), None, "',' or ']' after a list item", got=repr(separator) if separator else "end of file")


def _check_trailing(text: str, pos: int, path: Path, line_at) -> None:
    pos = _WHITESPACE.match(text, pos).end()
    if pos < len(text):
        raise InputDataError(path, line_at(pos), None, "nothing after the closing ']'", got=repr(text[pos : pos + 20]))


def _undecodable_field(value: Any, where: str = "") -> str | None:
    """Path of the first string (or key) that holds undecodable bytes, e.g. 'messages[1].content'."""
    if isinstance(value, str):
        return where or "(value)" if _SURROGATE.search(value) else None
    if isinstance(value, dict):
        for key, item in value.items():
            name = f"{where}.{key}" if where else key
            if _SURROGATE.search(key):
                return name
            found = _undecodable_field(item, name)
            if found:
                return found
    if isinstance(value, list):
        for i, item in enumerate(value):
            found = _undecodable_field(item, f"{where}[{i}]")
            if found:
                return found
    return None


# ----------------------------------------------------------------------------------------------
# Records to Conversations


def _detect_format(record: dict, path: Path, line: int) -> str:
    if "conversations" in record:
        return "sharegpt"
    if "chat_id" in record:
        return "kura"
    messages = record.get("messages")
    if isinstance(messages, list):
        first = messages[0] if messages else None
        return "kura" if isinstance(first, dict) and "created_at" in first else "openai"
    _fail(path, line, "messages", "a 'messages' list (Kura or OpenAI format) or a 'conversations' list (ShareGPT)",
          got="missing" if messages is None else describe_json_value(messages))


def _parse_kura(record: dict, path: Path, line: int, index: int | None = None) -> Conversation:
    chat_id = _required_text(record, "chat_id", path, line)
    created_at = _timestamp(record, "created_at", "created_at", path, line, required=True)
    raw_messages = _required_list(record, "messages", path, line)
    messages = []
    for i, item in enumerate(raw_messages):
        try:  # fast path for well-formed messages; the slow path below says exactly what is wrong
            role, content, moment = item["role"], item["content"], _fromisoformat(item["created_at"])
            ok = role in ROLES and type(content) is str and content and not content.isspace()
        except (TypeError, KeyError, ValueError):
            ok = False
        if not ok:
            role, content, moment = _explain_kura_message(item, i, path, line)
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=timezone.utc)
        messages.append(Message(role, content, moment))
    return Conversation(chat_id, created_at, messages, _metadata(record, path, line), _topic(record, path, line))


def _explain_kura_message(item: Any, i: int, path: Path, line: int) -> tuple[str, str, datetime]:
    where = f"messages[{i}]"
    if not isinstance(item, dict):
        _fail(path, line, where, "an object with created_at, role and content", got=describe_json_value(item))
    role = item.get("role")
    if role not in ROLES:
        _fail(path, line, f"{where}.role", "'user' or 'assistant'", got=_got(item, "role"))
    content = _content(item, f"{where}.content", path, line)
    moment = _timestamp(item, "created_at", f"{where}.created_at", path, line, required=True)
    return role, content, moment


def _parse_openai(record: dict, path: Path, line: int, index: int | None = None) -> Conversation:
    raw_messages = _required_list(record, "messages", path, line)
    turns = []
    for i, item in enumerate(raw_messages):
        where = f"messages[{i}]"
        if not isinstance(item, dict):
            _fail(path, line, where, "an object with role and content", got=describe_json_value(item))
        role = item.get("role")
        if role in _OPENAI_DROPPED_ROLES:
            continue
        if role not in ROLES:
            _fail(path, line, f"{where}.role", "'user', 'assistant' or 'system' (tool and function messages are not supported)", got=_got(item, "role"))
        turns.append((role, _content(item, f"{where}.content", path, line)))
    return _conversation_from_turns(record, turns, "messages", path, line, index)


def _parse_sharegpt(record: dict, path: Path, line: int, index: int | None = None) -> Conversation:
    raw_turns = _required_list(record, "conversations", path, line)
    turns = []
    for i, item in enumerate(raw_turns):
        where = f"conversations[{i}]"
        if not isinstance(item, dict):
            _fail(path, line, where, "an object with from and value", got=describe_json_value(item))
        speaker = item.get("from")
        if speaker in _SHAREGPT_DROPPED:
            continue
        if speaker not in _SHAREGPT_ROLES:
            _fail(path, line, f"{where}.from", "'human', 'gpt' or 'system'", got=_got(item, "from"))
        turns.append((_SHAREGPT_ROLES[speaker], _content(item, f"{where}.value", path, line, key="value")))
    return _conversation_from_turns(record, turns, "conversations", path, line, index)


def _conversation_from_turns(
    record: dict, turns: list[tuple[str, str]], list_field: str, path: Path, line: int, index: int | None
) -> Conversation:
    """OpenAI/ShareGPT records carry no per-message times: messages are placed one second apart.

    Missing ids and times derive from where the record sits: its line in JSONL, its index in a list.
    """
    if not turns:
        _fail(path, line, list_field, "at least one user or assistant message", got="none (empty, or only system messages)")
    stem = plain_stem(path)
    chat_id = _optional_id(record, path, line) or (f"{stem}:{line}" if index is None else f"{stem}:item-{index}")
    created_at = _timestamp(record, "created_at", "created_at", path, line, required=False)
    if created_at is None:
        created_at = _UNDATED_BASE + timedelta(seconds=line if index is None else index)
    messages = [Message(role, content, created_at + timedelta(seconds=i)) for i, (role, content) in enumerate(turns)]
    return Conversation(chat_id, created_at, messages, _metadata(record, path, line), _topic(record, path, line))


_PARSERS = {"kura": _parse_kura, "openai": _parse_openai, "sharegpt": _parse_sharegpt}


# ----------------------------------------------------------------------------------------------
# Field checks


def _within_list_item(err: InputDataError, index: int) -> InputDataError:
    """The same error with the list index in front of the field: '[3].messages[0].role'."""
    field_name = f"[{index}]" + (f".{err.field}" if err.field else "")
    return InputDataError(err.path, err.line, field_name, err.expected, err.got)


def _fail(path: Path, line: int, field_name: str | None, expected: str, got: Any = None) -> NoReturn:
    raise InputDataError(path, line, field_name, expected, got=got)


def describe_json_value(value: Any) -> str:
    """A value as the user wrote it, in JSON terms and short."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return f"number {value}"
    if isinstance(value, str):
        return f"string {value[:40]!r}" + ("..." if len(value) > 40 else "")
    if isinstance(value, list):
        return f"a list of {len(value)} items"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__


def _got(record: dict, key: str) -> str:
    return describe_json_value(record[key]) if key in record else "missing"


def _required_text(record: dict, key: str, path: Path, line: int) -> str:
    value = record.get(key)
    if not isinstance(value, str) or not value or value.isspace():
        _fail(path, line, key, "a non-empty string", got=_got(record, key))
    return value


def _required_list(record: dict, key: str, path: Path, line: int) -> list:
    value = record.get(key)
    if not isinstance(value, list):
        _fail(path, line, key, "a list of messages", got=_got(record, key))
    if not value:
        _fail(path, line, key, "at least one message", got="an empty list")
    return value


def _content(item: dict, field_name: str, path: Path, line: int, key: str = "content") -> str:
    value = item.get(key)
    if isinstance(value, list):  # OpenAI content parts: keep the text ones
        value = "\n".join(part["text"] for part in value if isinstance(part, dict) and part.get("type") == "text" and isinstance(part.get("text"), str))
    elif not isinstance(value, str):
        _fail(path, line, field_name, "a string", got=_got(item, key))
    if not value or value.isspace():
        _fail(path, line, field_name, "non-empty message text", got="empty text")
    return value


def _timestamp(record: dict, key: str, field_name: str, path: Path, line: int, required: bool) -> datetime | None:
    if key not in record or record[key] is None:
        if required:
            _fail(path, line, field_name, "an ISO-8601 timestamp string", got="missing")
        return None
    value = record[key]
    if not isinstance(value, str):
        _fail(path, line, field_name, "an ISO-8601 timestamp string", got=describe_json_value(value))
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        _fail(path, line, field_name, "an ISO-8601 timestamp such as 2024-05-01T12:00:00Z", got=describe_json_value(value))
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)


def _optional_id(record: dict, path: Path, line: int) -> str | None:
    for key in ("chat_id", "id"):
        if key in record and record[key] is not None:
            value = record[key]
            if isinstance(value, bool) or not isinstance(value, (str, int)) or (isinstance(value, str) and not value.strip()):
                _fail(path, line, key, "a non-empty string or an integer", got=describe_json_value(value))
            return str(value)
    return None


def _metadata(record: dict, path: Path, line: int) -> dict:
    value = record.get("metadata")
    if value is None:
        return {}
    if not isinstance(value, dict):
        _fail(path, line, "metadata", "an object", got=describe_json_value(value))
    return value


def _topic(record: dict, path: Path, line: int) -> str | None:
    value = record.get("topic")
    if value is not None and not isinstance(value, str):
        _fail(path, line, "topic", "a string (the ground-truth topic)", got=describe_json_value(value))
    return value


def _check_unique(chat_id: str, seen: dict[str, int], path: Path, line: int) -> None:
    if chat_id in seen:
        _fail(path, line, "chat_id", "an id not used earlier in the file", got=f"{chat_id!r}, already used on line {seen[chat_id]}")


def _kura_record(conversation: Conversation, include_topic: bool) -> dict:
    record = {
        "chat_id": conversation.chat_id,
        "created_at": conversation.created_at.isoformat(),
        "messages": [
            {"created_at": m.created_at.isoformat(), "role": m.role, "content": m.content} for m in conversation.messages
        ],
        "metadata": conversation.metadata,
    }
    if include_topic and conversation.topic is not None:
        record["topic"] = conversation.topic
    return record
