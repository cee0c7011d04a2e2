"""The one token estimate used for `usage`, the simulator's TPM buckets and the client's pacing.

No tokenizer ships offline, so a token is taken as 4 characters (OpenAI's rule of thumb for
English): ceil(len(text) / 4), and 0 for the empty string. It over-counts code a little and
under-counts CJK; what matters is that the simulator's usage, its buckets and the client's
estimates all agree, so counts can be compared exactly. It lives outside both the simulator and
the models so that neither imports the other.
"""

from __future__ import annotations

import math


def estimate_tokens(text: str) -> int:
    return math.ceil(len(text) / 4) if text else 0
