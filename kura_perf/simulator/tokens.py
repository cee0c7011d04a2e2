"""The simulator's token counts: the project-wide exact ones (kura_perf.tokens), so usage, buckets and
the client's pacing agree."""

from kura_perf.tokens import count_chat_tokens, count_tokens, truncate_to_tokens

__all__ = ["count_chat_tokens", "count_tokens", "truncate_to_tokens"]
