"""Conversation data in: the synthetic corpus with known topics, and loaders for real chat logs."""

from kura_perf.corpus.files import MAX_JSON_DEPTH, check_conversation_file
from kura_perf.corpus.generator import TOPICS, generate_conversation, generate_conversations, iter_conversations
from kura_perf.corpus.loaders import (
    FORMATS,
    LoadResult,
    NotEnoughConversations,
    load_conversations,
    write_conversations_jsonl,
)
from kura_perf.corpus.types import ROLES, Conversation, Message

__all__ = [
    "FORMATS",
    "MAX_JSON_DEPTH",
    "ROLES",
    "TOPICS",
    "Conversation",
    "LoadResult",
    "Message",
    "check_conversation_file",
    "NotEnoughConversations",
    "generate_conversation",
    "generate_conversations",
    "iter_conversations",
    "load_conversations",
    "write_conversations_jsonl",
]
