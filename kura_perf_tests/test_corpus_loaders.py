"""Loading conversation files: every format round-trips, every bad input is named precisely."""

from __future__ import annotations

import json
from datetime import datetime, timezone

import pytest

from kura_perf.corpus import (
    LoadResult,
    NotEnoughConversations,
    generate_conversations,
    load_conversations,
    write_conversations_jsonl,
)
from kura_perf.corpus.loaders import MAX_PROBLEMS
from kura_perf.errors import InputDataError, KuraPerfError


def write_lines(path, lines) -> None:
    """Lines may be dicts (dumped as JSON), str or bytes (written as is)."""
    with open(path, "wb") as f:
        for line in lines:
            if isinstance(line, dict):
                line = json.dumps(line)
            if isinstance(line, str):
                line = line.encode("utf-8")
            f.write(line + b"\n")


def kura_record(chat_id="c1", topic=None, **overrides) -> dict:
    record = {
        "chat_id": chat_id,
        "created_at": "2024-05-01T12:00:00Z",
        "messages": [
            {"created_at": "2024-05-01T12:00:00Z", "role": "user", "content": "How do I fix a leaky faucet?"},
            {"created_at": "2024-05-01T12:00:05Z", "role": "assistant", "content": "Turn off the water first."},
        ],
        "metadata": {"source": "test"},
    }
    if topic is not None:
        record["topic"] = topic
    record.update(overrides)
    return record


def with_message(field_name: str, value, index: int = 0) -> dict:
    record = kura_record(chat_id="bad")
    record["messages"][index][field_name] = value
    return record


# ---------------------------------------------------------------------------------------------- round trips


def test_kura_jsonl_round_trip_keeps_everything(tmp_path):
    originals = generate_conversations(30, seed=5)
    path = tmp_path / "synthetic.jsonl"
    assert write_conversations_jsonl(originals, path) == 30

    result = load_conversations(path)
    assert isinstance(result, LoadResult)
    assert result.conversations == originals
    assert (result.format, result.container, result.skipped, result.problems) == ("kura", "jsonl", 0, [])
    assert result.available == 30 and result.complete
    assert result.source == str(path)


def test_write_is_atomic_and_can_leave_out_the_topic(tmp_path):
    path = tmp_path / "sub" / "out.jsonl"
    write_conversations_jsonl(generate_conversations(3), path)
    write_conversations_jsonl(generate_conversations(2), path, include_topic=False)  # overwrite
    assert [p.name for p in path.parent.iterdir()] == ["out.jsonl"]  # no temp file left behind
    loaded = load_conversations(path).conversations
    assert len(loaded) == 2 and all(c.topic is None for c in loaded)
    assert all("topic" not in json.loads(line) for line in path.read_text().splitlines())


def test_kura_json_list_round_trip_with_line_numbers(tmp_path):
    originals = generate_conversations(4, seed=2)
    source = tmp_path / "a.jsonl"
    write_conversations_jsonl(originals, source)
    records = [json.loads(line) for line in source.read_text().splitlines()]
    dump = tmp_path / "kura_dump.json"
    dump.write_text(json.dumps(records, indent=2))  # Kura's generate_conversation_dump writes a list

    result = load_conversations(dump)
    assert result.conversations == originals
    assert result.container == "json-list"

    records[2]["messages"][1]["role"] = "robot"
    dump.write_text(json.dumps(records, indent=2))
    with pytest.raises(InputDataError) as err:
        load_conversations(dump)
    text = dump.read_text().splitlines()
    starts = [n + 1 for n, line in enumerate(text) if line == "  {"]  # 1-based lines where items start
    assert len(starts) == 4
    assert err.value.line == starts[2]
    assert f"line {starts[2]}" in str(err.value)
    assert "'[2].messages[1].role'" in str(err.value) and "kura_dump.json" in str(err.value)


def test_timestamps_with_z_offsets_and_naive_values_become_utc(tmp_path):
    path = tmp_path / "times.jsonl"
    record = kura_record(created_at="2024-05-01T12:00:00")
    record["messages"][1]["created_at"] = "2024-05-01T14:00:05+02:00"
    write_lines(path, [record])
    conversation = load_conversations(path).conversations[0]
    assert conversation.created_at == datetime(2024, 5, 1, 12, tzinfo=timezone.utc)
    assert conversation.messages[0].created_at == datetime(2024, 5, 1, 12, tzinfo=timezone.utc)
    assert conversation.messages[1].created_at == datetime(2024, 5, 1, 12, 0, 5, tzinfo=timezone.utc)


def test_openai_jsonl(tmp_path):
    path = tmp_path / "openai_chats.jsonl"
    write_lines(path, [
        {"messages": [
            {"role": "system", "content": "You are helpful."},
            {"role": "user", "content": "Explain recursion."},
            {"role": "assistant", "content": "A function that calls itself."},
        ], "topic": "coding"},
        "",
        {"id": "abc", "created_at": "2024-02-03T04:05:06Z", "messages": [
            {"role": "user", "content": [{"type": "text", "text": "What is in"}, {"type": "image_url", "image_url": {}},
                                         {"type": "text", "text": "this picture?"}]},
            {"role": "assistant", "content": "A cat."},
        ], "label": "not ground truth"},
    ])
    result = load_conversations(path)
    first, second = result.conversations
    assert result.format == "openai"
    assert [m.role for m in first.messages] == ["user", "assistant"]  # system dropped
    assert first.messages[0].content == "Explain recursion."
    assert first.topic == "coding" and first.chat_id == "openai_chats:1"
    assert second.chat_id == "abc" and second.topic is None
    assert second.created_at == datetime(2024, 2, 3, 4, 5, 6, tzinfo=timezone.utc)
    assert second.messages[0].content == "What is in\nthis picture?"
    assert second.messages[1].created_at > second.messages[0].created_at
    assert load_conversations(path).conversations == result.conversations  # generated ids and times are stable


def test_sharegpt_jsonl_and_json_list(tmp_path):
    records = [
        {"id": "s1", "conversations": [
            {"from": "system", "value": "Be brief."},
            {"from": "human", "value": "Best time to visit Japan?"},
            {"from": "gpt", "value": "Spring or autumn."},
        ]},
        {"conversations": [{"from": "human", "value": "Hi"}, {"from": "gpt", "value": "Hello!"}], "topic": "greeting"},
    ]
    jsonl = tmp_path / "share.jsonl"
    write_lines(jsonl, records)
    as_list = tmp_path / "share.json"
    as_list.write_text(json.dumps(records))

    for path, generated_id in ((jsonl, "share:2"), (as_list, "share:item-1")):  # line in JSONL, index in a list
        result = load_conversations(path)
        assert result.format == "sharegpt"
        first, second = result.conversations
        assert [(m.role, m.content) for m in first.messages] == [
            ("user", "Best time to visit Japan?"), ("assistant", "Spring or autumn.")]
        assert first.chat_id == "s1"
        assert second.topic == "greeting" and second.chat_id == generated_id


def test_single_line_json_list_gets_distinct_ids_and_item_indexes_in_errors(tmp_path):
    path = tmp_path / "oneline.json"
    records = [{"conversations": [{"from": "human", "value": f"question {i}"}]} for i in range(3)]
    path.write_text(json.dumps(records))
    assert [c.chat_id for c in load_conversations(path).conversations] == ["oneline:item-0", "oneline:item-1", "oneline:item-2"]

    records[2]["conversations"][0]["from"] = "bot"
    path.write_text(json.dumps(records))
    with pytest.raises(InputDataError) as err:
        load_conversations(path)
    assert "oneline.json, line 1" in str(err.value) and "'[2].conversations[0].from'" in str(err.value)


def test_explicit_format_must_match_the_records(tmp_path):
    path = tmp_path / "share.jsonl"
    write_lines(path, [{"conversations": [{"from": "human", "value": "Hi"}]}])
    assert load_conversations(path, format="sharegpt").format == "sharegpt"
    with pytest.raises(InputDataError) as err:
        load_conversations(path, format="openai")
    assert "share.jsonl, line 1" in str(err.value) and "'messages'" in str(err.value)


def test_utf8_bom_and_blank_lines_are_tolerated(tmp_path):
    path = tmp_path / "bom.jsonl"
    path.write_bytes(b"\xef\xbb\xbf" + json.dumps(kura_record("a")).encode() + b"\n\n  \n" + json.dumps(kura_record("b")).encode())
    assert [c.chat_id for c in load_conversations(path).conversations] == ["a", "b"]


# ---------------------------------------------------------------------------------------------- bad records

GOOD = kura_record(chat_id="good")

BAD_KURA_RECORDS = [
    # (case, the bad line, field named in the message)
    ("missing chat_id", {k: v for k, v in kura_record().items() if k != "chat_id"}, "chat_id"),
    ("chat_id not a string", kura_record(chat_id=123), "chat_id"),
    ("empty chat_id", kura_record(chat_id="  "), "chat_id"),
    ("duplicate chat_id", kura_record(chat_id="good"), "chat_id"),
    ("missing created_at", {k: v for k, v in kura_record(chat_id="x").items() if k != "created_at"}, "created_at"),
    ("bad created_at", kura_record(chat_id="x", created_at="yesterday"), "created_at"),
    ("created_at not a string", kura_record(chat_id="x", created_at=1714564800), "created_at"),
    ("missing messages", {k: v for k, v in kura_record(chat_id="x").items() if k != "messages"}, "messages"),
    ("messages not a list", kura_record(chat_id="x", messages="hello"), "messages"),
    ("empty conversation", kura_record(chat_id="x", messages=[]), "messages"),
    ("message not an object", kura_record(chat_id="x", messages=["hi"]), "messages[0]"),
    ("unknown role", with_message("role", "tool", 1), "messages[1].role"),
    ("missing role", {**kura_record(chat_id="x"), "messages": [{"created_at": "2024-05-01T12:00:00Z", "content": "hi"}]}, "messages[0].role"),
    ("content not a string", with_message("content", 42), "messages[0].content"),
    ("empty content", with_message("content", "   "), "messages[0].content"),
    ("bad message created_at", with_message("created_at", "2024-13-45"), "messages[0].created_at"),
    ("metadata not an object", kura_record(chat_id="x", metadata=["a"]), "metadata"),
    ("topic not a string", kura_record(chat_id="x", topic=7), "topic"),
]


@pytest.mark.parametrize("case, bad, field_name", BAD_KURA_RECORDS, ids=[c[0] for c in BAD_KURA_RECORDS])
def test_bad_kura_record_names_file_line_and_field(tmp_path, case, bad, field_name):
    path = tmp_path / "chats.jsonl"
    write_lines(path, [GOOD, "", bad])  # the blank line makes the bad record line 3
    with pytest.raises(InputDataError) as err:
        load_conversations(path)
    message = str(err.value)
    assert "chats.jsonl" in message and "line 3" in message and f"'{field_name}'" in message, message
    assert (err.value.line, err.value.field) == (3, field_name)
    assert "expected" in message


@pytest.mark.parametrize("case, lines, line, field_name, fmt", [
    ("openai tool role", [{"messages": [{"role": "user", "content": "q"}, {"role": "tool", "content": "{}"}]}],
     1, "messages[1].role", "auto"),
    ("openai only system", [{"messages": [{"role": "user", "content": "q"}]}, {"messages": [{"role": "system", "content": "s"}]}],
     2, "messages", "auto"),
    ("openai null content", [{"messages": [{"role": "assistant", "content": None, "tool_calls": []}]}],
     1, "messages[0].content", "openai"),
    ("openai bad id", [{"id": [1], "messages": [{"role": "user", "content": "q"}]}], 1, "id", "openai"),
    ("sharegpt unknown speaker", [{"conversations": [{"from": "bing", "value": "x"}]}], 1, "conversations[0].from", "auto"),
    ("sharegpt empty value", [{"conversations": [{"from": "human", "value": ""}]}], 1, "conversations[0].value", "auto"),
    ("sharegpt empty list", [{"conversations": []}], 1, "conversations", "sharegpt"),
    ("unrecognised record", [{"text": "just some text"}], 1, "messages", "auto"),
])
def test_bad_openai_and_sharegpt_records(tmp_path, case, lines, line, field_name, fmt):
    path = tmp_path / "external.jsonl"
    write_lines(path, lines)
    with pytest.raises(InputDataError) as err:
        load_conversations(path, format=fmt)
    message = str(err.value)
    assert "external.jsonl" in message and f"line {line}" in message and f"'{field_name}'" in message, message


def test_malformed_json_line_names_line_and_column(tmp_path):
    path = tmp_path / "broken.jsonl"
    write_lines(path, [GOOD, '{"chat_id": "x", "messages": [}'])
    with pytest.raises(InputDataError) as err:
        load_conversations(path)
    message = str(err.value)
    assert "broken.jsonl, line 2" in message and "invalid JSON" in message and "column" in message


def test_line_that_is_not_an_object(tmp_path):
    path = tmp_path / "list_line.jsonl"
    write_lines(path, [GOOD, "[1, 2, 3]"])
    with pytest.raises(InputDataError, match=r"list_line.jsonl, line 2: expected a JSON object"):
        load_conversations(path)


def test_non_utf8_bytes_name_line_and_field(tmp_path):
    path = tmp_path / "latin1.jsonl"
    bad = json.dumps(kura_record(chat_id="x")).replace("leaky", "l\\u00e9aky").encode().replace(b"\\u00e9", b"\xe9")
    write_lines(path, [GOOD, bad])
    with pytest.raises(InputDataError) as err:
        load_conversations(path)
    message = str(err.value)
    assert "latin1.jsonl, line 2" in message and "'messages[0].content'" in message and "UTF-8" in message
    assert "0xe9" in message


def test_non_utf8_bytes_in_a_json_list(tmp_path):
    path = tmp_path / "latin1.json"
    good = json.dumps(GOOD).encode()
    bad = json.dumps(kura_record(chat_id="x")).encode().replace(b"faucet", b"fauc\xe9t")
    path.write_bytes(b"[\n" + good + b",\n" + bad + b"\n]\n")
    with pytest.raises(InputDataError) as err:
        load_conversations(path)
    assert "latin1.json, line 3" in str(err.value) and "'[1].messages[0].content'" in str(err.value)


def test_broken_json_list_names_the_line(tmp_path):
    path = tmp_path / "dump.json"
    path.write_text("[\n" + json.dumps(GOOD) + "\n" + json.dumps(kura_record("x")) + "\n]")  # missing comma
    with pytest.raises(InputDataError) as err:
        load_conversations(path, lenient=True)  # structure errors cannot be skipped
    assert "dump.json, line 3" in str(err.value) and "','" in str(err.value)


# ---------------------------------------------------------------------------------------------- bad files


@pytest.mark.parametrize("content", [b"", b"  \n\n\t\n", b"[]", b" [ ]\n"], ids=["zero bytes", "blank", "empty list", "empty list spaced"])
def test_empty_files_are_errors_even_when_lenient(tmp_path, content):
    path = tmp_path / "empty.jsonl"
    path.write_bytes(content)
    for lenient in (False, True):
        with pytest.raises(InputDataError) as err:
            load_conversations(path, lenient=lenient)
        assert "empty.jsonl" in str(err.value) and "empty" in str(err.value)


def test_missing_file_is_a_clear_input_error(tmp_path):
    path = tmp_path / "nope.jsonl"
    with pytest.raises(InputDataError) as err:
        load_conversations(path)
    assert not isinstance(err.value, FileNotFoundError)
    assert "nope.jsonl" in str(err.value) and "no such file" in str(err.value)
    with pytest.raises(InputDataError, match="a directory"):
        load_conversations(tmp_path)


def test_bad_arguments_are_refused(tmp_path):
    path = tmp_path / "ok.jsonl"
    write_lines(path, [GOOD])
    with pytest.raises(KuraPerfError, match="unknown conversation format"):
        load_conversations(path, format="csv")
    for limit in (0, -3, 2.5, True):
        with pytest.raises(KuraPerfError, match="limit"):
            load_conversations(path, limit=limit)


# ---------------------------------------------------------------------------------------------- lenient mode


def test_lenient_skips_and_reports_bad_records(tmp_path):
    path = tmp_path / "mixed.jsonl"
    lines = [
        "not json at all",  # line 1: auto-detection must look past it
        kura_record("a"),
        with_message("role", "tool"),
        kura_record("b"),
        kura_record("a"),  # duplicate id
        kura_record("c", messages=[]),
        kura_record("d"),
    ]
    write_lines(path, lines)
    with pytest.raises(InputDataError, match="line 1"):
        load_conversations(path)

    result = load_conversations(path, lenient=True)
    assert [c.chat_id for c in result.conversations] == ["a", "b", "d"]
    assert result.skipped == 4 and result.available == 3 and result.format == "kura"
    assert [p.split(":")[0] for p in result.problems] == [f"{path}, line {n}" for n in (1, 3, 5, 6)]
    assert "messages[0].role" in result.problems[1] and "chat_id" in result.problems[2]


def test_lenient_with_nothing_valid_is_still_an_error(tmp_path):
    path = tmp_path / "allbad.jsonl"
    write_lines(path, ["{", with_message("content", "")])
    with pytest.raises(InputDataError) as err:
        load_conversations(path, lenient=True)
    assert "allbad.jsonl" in str(err.value) and "none of 2 records were valid" in str(err.value)


def test_problem_messages_are_capped_but_all_skips_counted(tmp_path):
    path = tmp_path / "many.jsonl"
    write_lines(path, ["{bad"] * (MAX_PROBLEMS + 50) + [GOOD])
    result = load_conversations(path, lenient=True)
    assert result.skipped == MAX_PROBLEMS + 50
    assert len(result.problems) == MAX_PROBLEMS
    assert len(result.conversations) == 1


# ---------------------------------------------------------------------------------------------- limit


@pytest.fixture
def fifty(tmp_path):
    path = tmp_path / "fifty.jsonl"
    write_conversations_jsonl(generate_conversations(50, seed=1), path)
    return path


def test_limit_takes_the_first_valid_conversations_in_order(fifty):
    result = load_conversations(fifty, limit=10)
    assert result.conversations == generate_conversations(10, seed=1)
    assert result.available == 10 and not result.complete


def test_limit_stops_reading_once_reached(tmp_path):
    path = tmp_path / "tail_broken.jsonl"
    write_lines(path, [kura_record(f"c{i}") for i in range(5)] + ["{ this line is never read"])
    assert len(load_conversations(path, limit=5).conversations) == 5
    with pytest.raises(InputDataError, match="line 6"):
        load_conversations(path, limit=6)


def test_limit_counts_only_valid_records_in_lenient_mode(tmp_path):
    path = tmp_path / "gaps.jsonl"
    write_lines(path, [kura_record("a"), "{", kura_record("b"), with_message("role", "x"), kura_record("c")])
    result = load_conversations(path, limit=3, lenient=True)
    assert [c.chat_id for c in result.conversations] == ["a", "b", "c"] and result.skipped == 2


def test_short_file_is_refused_unless_allowed(fifty):
    with pytest.raises(NotEnoughConversations) as err:
        load_conversations(fifty, limit=80)
    assert isinstance(err.value, InputDataError)
    message = str(err.value)
    assert "fifty.jsonl" in message and "50" in message and "80" in message and "allow_short" in message
    assert (err.value.available, err.value.needed) == (50, 80)

    result = load_conversations(fifty, limit=80, allow_short=True)
    assert len(result.conversations) == 50 and result.available == 50 and result.complete
