"""Summaries from a Kura summaries checkpoint (summary_model = "checkpoint:<path>"): the pipeline runs on
them with no model and no API, the stored table is the one every summary model gives, and a checkpoint
that does not cover the partition or has a bad line is refused naming the file, line, field or chat_id."""

import json
import random
from pathlib import Path

import pytest

from kura_perf.backends import get_backend
from kura_perf.cli.main import main
from kura_perf.corpus.generator import generate_conversations
from kura_perf.corpus.kura_checkpoint import kura_summary_record, write_summaries_checkpoint
from kura_perf.corpus.loaders import load_conversations, write_conversations_jsonl
from kura_perf.errors import InputDataError, ProfileError
from kura_perf.files.outputs import read_stage
from kura_perf.models.checkpoint_summary import NULL_RULE, read_summaries
from kura_perf.models.offline_summary import OfflineSummaryModel
from kura_perf.pipeline.runner import StageRun, run_stage
from kura_perf.pipeline.streaming import streams
from kura_perf.profiles import Profile, get_profile, parse_profiles
from kura_perf.settings.paths import Paths
from kura_perf.settings.run import RunSettings
from kura_perf.stages.base import STAGES
from kura_perf.stages.summaries import SUMMARY_COLUMNS, embed_text, summarise

N = 30
EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "checkpoint_summaries"


def _llm_fields(conversation, i):
    """Summaries unlike the offline model's (so the test sees they came from the file), some fields null."""
    return {
        "summary": f"An LLM summary number {i}: the user wants help and the assistant gives it.",
        "request": None if i % 4 == 0 else f"Request {i}",
        "task": f"Task {i}",
        "languages": None if i % 3 == 0 else ["english", "python"],
        "concerning_score": None if i % 5 == 0 else 1 + i % 5,
        "user_frustration": 1 + (i * 2) % 5,
        "assistant_errors": None if i % 6 == 0 else [f"error {i}"],
    }


@pytest.fixture
def fixture_files(tmp_path, monkeypatch):
    """conversations.jsonl (N synthetic) and summaries.jsonl (their summaries shuffled, plus summaries of
    conversations outside the partition), referred to by relative paths from tmp_path."""
    monkeypatch.chdir(tmp_path)
    conversations = generate_conversations(N + 10, seed=3)
    write_conversations_jsonl(conversations[:N], tmp_path / "conversations.jsonl")
    records = [kura_summary_record(c.chat_id, _llm_fields(c, i), metadata={"conversation_turns": 2}, topic="x")
               for i, c in enumerate(conversations)]
    random.Random(0).shuffle(records)
    write_summaries_checkpoint(records, tmp_path / "summaries.jsonl")
    return tmp_path, conversations[:N], {r["chat_id"]: r for r in records}


def _profile(**overrides) -> Profile:
    body = {"name": "from-checkpoint", "data_file": "conversations.jsonl", "summary_model": "checkpoint:summaries.jsonl",
            "allow_short_data": True, "embedding_backend": "torch", "clustering": "kmeans",
            "clustering_params": {"clusters_per_group": 5}, "meta_max_clusters": 2, "projection": "pca"}
    return Profile(**{**body, **overrides})


def _run(profile, root, stages):
    backend = get_backend(profile, RunSettings.from_env())
    try:
        return {stage: run_stage(StageRun(stage, profile, "100", settings=RunSettings.from_env(paths=Paths(root / "data")), backend=backend))
                for stage in stages}
    finally:
        backend.close()


@pytest.mark.slow
def test_the_pipeline_runs_on_the_checkpoints_summaries(fixture_files):
    root, conversations, by_id = fixture_files
    profile = _profile()
    records = _run(profile, root, STAGES)
    assert {stage: r.status for stage, r in records.items()} == {stage: "success" for stage in STAGES}

    summaries = read_stage(Paths(root / "data").partition_dir(profile.name, "100"), "summaries").tables["main"]
    assert list(summaries.columns) == list(SUMMARY_COLUMNS)
    assert list(summaries["chat_id"]) == [c.chat_id for c in conversations]  # partition order, not the file's
    for row in summaries.to_dict("records"):
        stored = by_id[row["chat_id"]]
        expected = {name: NULL_RULE[name] if stored[name] is None else stored[name] for name in NULL_RULE}
        expected["summary"] = stored["summary"]
        assert row["summary"] == stored["summary"]
        assert {k: (list(v) if k in ("languages", "assistant_errors") else v) for k, v in row.items()
                if k in expected} == expected
        assert row["embed_text"] == embed_text(expected, profile.embed_text)  # the profile's layout

    # The same column types as a summary model's table (offline here).
    offline = summarise(load_conversations("conversations.jsonl", limit=N).conversations, OfflineSummaryModel())
    assert dict(summaries.dtypes) == dict(offline.dtypes)

    record = records["summaries"]
    assert record.api_calls == 0 and record.cost_usd == 0.0 and record.tokens_in == 0
    extra = json.loads(record.extra)
    assert extra["source"] == f"kura-checkpoint:{(root / 'summaries.jsonl').resolve()}"
    assert extra["checkpoint_summaries"] == N + 10
    in_partition = [by_id[c.chat_id] for c in conversations]
    assert extra["nulls_filled"]["languages"] == sum(r["languages"] is None for r in in_partition)
    assert records["embeddings"].items_out == N


def test_a_conversation_without_a_summary_is_refused_naming_the_file_and_the_first_chat_id(fixture_files):
    root, conversations, by_id = fixture_files
    gone = {conversations[17].chat_id, conversations[4].chat_id}  # the 5th in partition order comes first
    kept = [r for chat_id, r in by_id.items() if chat_id not in gone]
    write_summaries_checkpoint(kept, root / "summaries.jsonl")
    profile = _profile()
    _run(profile, root, ["conversations"])
    with pytest.raises(InputDataError) as caught:
        _run(profile, root, ["summaries"])
    message = str(caught.value)
    assert message.startswith("summaries.jsonl: field 'chat_id'")
    assert (f"none for chat_id '{conversations[4].chat_id}', the first in partition order; "
            f"2 of {N} conversations have none") in message
    assert conversations[17].chat_id not in message


def _write_lines(path, lines):
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")


GOOD = kura_summary_record("a", {"summary": "s", "request": "r", "task": "t", "languages": ["english"],
                                 "concerning_score": 1, "user_frustration": 2, "assistant_errors": []})


@pytest.mark.parametrize("bad_line, field, expected", [
    ("{not json", None, "one JSON object per line"),
    ('["a list"]', None, "a JSON object"),
    (json.dumps({**GOOD, "chat_id": None}), "chat_id", "a non-empty string (got null)"),
    (json.dumps({k: v for k, v in GOOD.items() if k != "chat_id"}), "chat_id", "a non-empty string (got missing)"),
    (json.dumps({**GOOD, "chat_id": "b", "summary": 3}), "summary", "a string (got number 3)"),
    (json.dumps({**GOOD, "chat_id": "b", "concerning_score": "high"}), "concerning_score", "an int from 1 to 5"),
    (json.dumps({**GOOD, "chat_id": "b", "user_frustration": 9}), "user_frustration", "an int from 1 to 5 or null (got number 9)"),
    (json.dumps({**GOOD, "chat_id": "b", "languages": "english"}), "languages", "a list of strings or null"),
    (json.dumps({**GOOD, "chat_id": "b", "assistant_errors": [1]}), "assistant_errors", "a list of strings"),
    (json.dumps({**GOOD, "chat_id": "b", "task": ["t"]}), "task", "a string or null"),
    (json.dumps(GOOD), "chat_id", "an id not used earlier in the checkpoint (got 'a', already on line 1)"),
])
def test_a_malformed_line_is_refused_with_file_line_and_field(tmp_path, bad_line, field, expected):
    path = tmp_path / "summaries.jsonl"
    _write_lines(path, [json.dumps(GOOD), json.dumps({**GOOD, "chat_id": "c"}), bad_line,
                        json.dumps({**GOOD, "chat_id": "d"})])
    with pytest.raises(InputDataError) as caught:
        read_summaries(path, {"a"})  # every line is checked, not only the wanted ones
    err = caught.value
    assert (err.path, err.line, err.field) == (path, 3, field)
    assert str(err).startswith(f"{path}, line 3: ") and expected in str(err)


def test_a_malformed_line_fails_the_stage_with_its_line_number(fixture_files):
    root, _, by_id = fixture_files
    lines = [json.dumps(r) for r in by_id.values()]
    lines[6] = lines[6][:40]  # a line cut short inside a string, as a killed writer leaves it
    _write_lines(root / "summaries.jsonl", lines)
    profile = _profile()
    _run(profile, root, ["conversations"])
    cut = r"^summaries.jsonl, line 7: expected one JSON object per line \(got invalid JSON: Unterminated string starting at column \d+\)"
    with pytest.raises(InputDataError, match=cut):
        _run(profile, root, ["summaries"])


def test_a_missing_checkpoint_is_refused_before_the_run_starts(tmp_path, kp_home, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "profiles.toml").write_text('[ck]\nsummary_model = "checkpoint:nowhere/summaries.jsonl"\n')
    assert main(["run", "--profiles", "profiles.toml", "--profile", "ck", "--scale", "100"]) == 2
    err = capsys.readouterr().err
    assert "nowhere/summaries.jsonl: expected a Kura summaries checkpoint (summaries.jsonl) (got no such file)" in err
    assert "Traceback" not in err
    assert not (kp_home / "metrics").exists() or not any((kp_home / "metrics").rglob("*.parquet"))


def test_the_profile_key_is_validated():
    assert _profile().summary_model == "checkpoint:summaries.jsonl"
    assert _profile().content_hash() != _profile(summary_model="checkpoint:other.jsonl").content_hash()
    for body, words in [
        ({"summary_model": "checkpoint:"}, "names no file after 'checkpoint:'"),
        ({"summary_model": "checkpoint:s.jsonl", "backend": "kura", "embedding_model": "minilm"},
         "read by the reference backend only"),
        ({"naming_model": "checkpoint:s.jsonl"}, "key 'naming_model': 'checkpoint:s.jsonl' is not allowed"),
        ({"summary_model": "gpt-4o"}, "or 'checkpoint:<path to Kura's summaries.jsonl>'"),
    ]:
        with pytest.raises(ProfileError, match=words.replace("(", r"\(").replace(")", r"\)")):
            parse_profiles({"p": body}, "profiles.toml")


def test_checkpoint_summaries_are_read_whole_when_the_profile_streams():
    profile = _profile(stream_batch_size=10, data_file=None)
    assert not streams("summaries", profile)  # one pass over the file per stage, not one per batch
    assert streams("embeddings", profile) and streams("conversations", profile)
    assert streams("summaries", _profile(stream_batch_size=10, data_file=None, summary_model="offline"))


def test_a_checkpoint_written_by_kura_reads_the_same(tmp_path):
    kura_checkpoints = pytest.importorskip("kura.checkpoints.jsonl")
    from kura.types import ConversationSummary

    conversations = generate_conversations(5, seed=1)
    made = [ConversationSummary(chat_id=c.chat_id, metadata={"conversation_turns": len(c.messages)},
                                **{k: v for k, v in _llm_fields(c, i).items() if v is not None})
            for i, c in enumerate(conversations)]
    kura_checkpoints.JSONLCheckpointManager(str(tmp_path)).save_checkpoint("summaries", made)
    found, info = read_summaries(tmp_path / "summaries.jsonl", {c.chat_id for c in conversations})
    assert info["checkpoint_summaries"] == 5
    for summary in made:
        fields = found[summary.chat_id]
        assert fields["summary"] == summary.summary and fields["task"] == summary.task
        assert fields["languages"] == (summary.languages if summary.languages is not None else [])
    # ...and ours is what Kura's own manager reads back.
    ours = tmp_path / "ours"
    write_summaries_checkpoint([kura_summary_record(s.chat_id, s.model_dump(include=set(NULL_RULE) | {"summary"}),
                                                    s.metadata) for s in made], ours / "summaries.jsonl")
    back = kura_checkpoints.JSONLCheckpointManager(str(ours)).load_checkpoint("summaries", ConversationSummary)
    assert [s.model_dump() for s in back] == [s.model_dump() for s in made]


def test_the_shipped_example_covers_its_conversations(monkeypatch):
    monkeypatch.chdir(EXAMPLE.parents[1])  # the example's relative paths are from the repository root
    profile = get_profile("checkpoint-example", str(EXAMPLE / "profiles.toml"))
    conversations = load_conversations(profile.data_file).conversations
    found, info = read_summaries(Path(profile.summary_model.removeprefix("checkpoint:")),
                                 {c.chat_id for c in conversations})
    assert len(conversations) == 20 and set(found) == {c.chat_id for c in conversations}
    assert info["nulls_filled"]  # the example shows the null rule at work


def test_the_shipped_example_is_what_its_script_writes(tmp_path):
    import runpy

    script = runpy.run_path(str(EXAMPLE.parents[1] / "scripts" / "make_checkpoint_example.py"))
    script["main"](tmp_path)
    for name in ("conversations.jsonl", "summaries.jsonl"):
        assert (tmp_path / name).read_bytes() == (EXAMPLE / name).read_bytes(), name
