"""The simulator's token estimate: the project-wide one (kura_perf.tokens), so usage, buckets and the
client's pacing agree."""

from kura_perf.tokens import estimate_tokens

__all__ = ["estimate_tokens"]
