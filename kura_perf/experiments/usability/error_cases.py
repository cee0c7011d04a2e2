"""The catalogue of bad inputs fed to Kura (issue 13, proposal §2.1 "error clarity"): data only.

Each case names a driver (what Kura call is made, see error_clarity.DRIVERS), the driver's input,
and the subject words a clear message would name (the field, file, setting, model or endpoint the
case broke). How a message is graded: error_grading.py. To add a case, add an entry here; a new kind
of call needs a driver.

Placeholders in inputs: "{tmp}" is the case's own scratch folder; "{sim}" the simulator's /v1 URL.
"""

from __future__ import annotations

from dataclasses import dataclass, field

_T = "2024-05-01T10:00:00Z"
_MSG = {"created_at": _T, "role": "user", "content": "How do I reverse a list in Python?"}
_CONV = {"chat_id": "c1", "created_at": _T, "messages": [_MSG], "metadata": {}}


@dataclass(frozen=True)
class ErrorCase:
    case_id: str
    category: str  # input | configuration | api | checkpoint | clustering
    description: str
    driver: str
    kura_call: str
    subjects: tuple[str, ...]
    input: dict = field(default_factory=dict)
    timeout_s: float = 45.0


CASES: list[ErrorCase] = [
    # -- conversations: malformed input ---------------------------------------------------------------
    ErrorCase("missing_chat_id", "input", "a conversation without chat_id", "validate_conversation",
              "Conversation.model_validate", ("chat_id",),
              {"record": {k: v for k, v in _CONV.items() if k != "chat_id"}}),
    ErrorCase("bad_role", "input", "a message whose role is 'robot'", "validate_conversation",
              "Conversation.model_validate", ("role",),
              {"record": {**_CONV, "messages": [{**_MSG, "role": "robot"}]}}),
    ErrorCase("content_not_text", "input", "a message whose content is a number", "validate_conversation",
              "Conversation.model_validate", ("content",),
              {"record": {**_CONV, "messages": [{**_MSG, "content": 42}]}}),
    ErrorCase("bad_timestamp", "input", "created_at = 'yesterday'", "validate_conversation",
              "Conversation.model_validate", ("created_at",), {"record": {**_CONV, "created_at": "yesterday"}}),
    ErrorCase("nested_metadata", "input", "metadata holding a nested object", "validate_conversation",
              "Conversation.model_validate", ("metadata",),
              {"record": {**_CONV, "metadata": {"user": {"id": 7, "plan": "pro"}}}}),
    ErrorCase("dump_malformed_json", "input", "a conversation dump cut off mid-file", "load_dump",
              "Conversation.from_conversation_dump", ("conversations.json",),
              {"text": '[{"chat_id": "c1", "created_at": "2024-05-01T10:00:00Z", "messages": ['}),
    ErrorCase("dump_missing_file", "input", "a conversation dump path that does not exist", "load_dump",
              "Conversation.from_conversation_dump", ("no-such-dump.json",), {"path": "{tmp}/no-such-dump.json"}),
    ErrorCase("dump_missing_messages", "input", "a dump record without its messages", "load_dump",
              "Conversation.from_conversation_dump", ("messages",),
              {"text": '[{"chat_id": "c1", "created_at": "2024-05-01T10:00:00Z", "metadata": {}}]'}),
    ErrorCase("claude_dump_missing_field", "input", "a Claude export record without chat_messages",
              "load_claude_dump", "Conversation.from_claude_conversation_dump", ("chat_messages",),
              {"text": '[{"uuid": "c1", "created_at": "2024-05-01T10:00:00Z", "name": "x"}]'}),
    ErrorCase("empty_conversation", "input", "a conversation with no messages, summarised", "summarise",
              "summarise_conversations", ("messages", "empty", "c-empty"),
              {"conversations": [{"chat_id": "c-empty", "created_at": _T, "messages": [], "metadata": {}}]}),
    ErrorCase("no_summaries", "clustering", "clustering an empty list of summaries", "cluster",
              "generate_base_clusters_from_conversation_summaries", ("summaries", "empty"), {"n": 0}),
    # -- configuration --------------------------------------------------------------------------------
    ErrorCase("unknown_provider", "configuration", "SummaryModel(model='nosuchprovider/model-x')", "summarise",
              "SummaryModel + summarise_conversations", ("nosuchprovider",),
              {"model": "nosuchprovider/model-x"}),
    ErrorCase("model_without_provider", "configuration", "SummaryModel(model='gpt-4o-mini') (no provider/ prefix)",
              "summarise", "SummaryModel + summarise_conversations", ("gpt-4o-mini", "provider"),
              {"model": "gpt-4o-mini"}),
    ErrorCase("missing_api_key", "configuration", "no OPENAI_API_KEY in the environment", "summarise",
              "SummaryModel + summarise_conversations", ("OPENAI_API_KEY", "api_key"),
              {"unset_env": ["OPENAI_API_KEY"]}),
    ErrorCase("zero_concurrency", "configuration", "SummaryModel(max_concurrent_requests=0)", "summarise",
              "SummaryModel + summarise_conversations", ("max_concurrent_requests", "concurren"),
              {"model_kwargs": {"max_concurrent_requests": 0}}, timeout_s=20.0),
    ErrorCase("wrong_embedding_dimension", "clustering", "an embedding model returning 384-d and 1536-d vectors",
              "cluster", "generate_base_clusters_from_conversation_summaries", ("embedding",),
              {"n": 20, "embedding": "mixed_dimensions"}),
    ErrorCase("zero_clusters_per_group", "clustering", "KmeansClusteringModel(clusters_per_group=0)",
              "cluster", "generate_base_clusters_from_conversation_summaries", ("clusters_per_group",),
              {"n": 20, "kmeans": {"clusters_per_group": 0}}),
    # -- the API --------------------------------------------------------------------------------------
    ErrorCase("rate_limit_storm", "api", "every request answered 429 (simulator forced rate limits)", "summarise",
              "summarise_conversations", ("429", "rate limit"), {"simulator": {"rate_limit_rate": 1.0,
                                                                             "forced_retry_after_s": 0.2}},
              timeout_s=90.0),
    ErrorCase("server_errors", "api", "every request answered 500/503", "summarise", "summarise_conversations",
              ("500", "503", "server"), {"simulator": {"error_rate": 1.0}}, timeout_s=90.0),
    ErrorCase("unreachable_endpoint", "api", "OPENAI_BASE_URL pointing at a closed port", "summarise",
              "summarise_conversations", ("127.0.0.1:9", "OPENAI_BASE_URL", "base_url"),
              {"base_url": "http://127.0.0.1:9/v1"}, timeout_s=90.0),
    # -- checkpoints ----------------------------------------------------------------------------------
    ErrorCase("checkpoint_dir_is_file", "checkpoint", "a checkpoint dir that is an existing file",
              "checkpoint_dir", "JSONLCheckpointManager", ("not-a-dir",), {"path": "{tmp}/not-a-dir"}),
    ErrorCase("corrupt_jsonl_checkpoint", "checkpoint", "a summaries.jsonl checkpoint with a garbage line",
              "summarise", "summarise_conversations(checkpoint_manager=JSONL)", ("summaries.jsonl",),
              {"checkpoint": {"format": "jsonl", "file": "summaries.jsonl", "text": "{not json\n"}}),
    ErrorCase("parquet_checkpoint_reload", "checkpoint", "resuming from Kura's own Parquet summaries checkpoint "
              "(pandas 3)", "summarise", "summarise_conversations(checkpoint_manager=Parquet)",
              ("summaries.parquet",), {"checkpoint": {"format": "parquet", "file": "summaries.parquet"}}),
]


def case_ids() -> list[str]:
    return [c.case_id for c in CASES]
