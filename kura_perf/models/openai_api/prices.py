"""List prices per 1M tokens, and what a call cost.

Costs are tokens x price: the tokens are exact counts in the model's encoding (kura_perf/tokens.py, as
the simulator's `usage` reports them), the prices dated and sourced per model (PRICE_SOURCES).

Why a model missing from the table has no price (None) rather than $0: a benchmark that silently
reports $0.00 for an unknown model tells the reader the run was free. An unknown price makes the
record's cost null and adds a warning naming the model, so the gap is visible and can be closed with
a per-profile override (`api.prices` in a profile) or a new row here.
"""

from __future__ import annotations

# The date the prices below were taken from the providers' public pricing pages. Prices change:
# check the provider's page before quoting a cost, and override per profile when yours differ.
PRICES_AS_OF = "2025-08"

# USD per 1M tokens, (input, output). Standard (non-batch, non-cached) list prices.
PRICES_PER_1M_TOKENS: dict[str, tuple[float, float]] = {
    # OpenAI chat
    "gpt-4o-mini": (0.15, 0.60),
    "gpt-4o": (2.50, 10.00),
    "gpt-4.1": (2.00, 8.00),
    "gpt-4.1-mini": (0.40, 1.60),
    "gpt-4.1-nano": (0.10, 0.40),
    "gpt-5": (1.25, 10.00),
    "gpt-5-mini": (0.25, 2.00),
    "gpt-5-nano": (0.05, 0.40),
    "o3": (2.00, 8.00),
    "o4-mini": (1.10, 4.40),
    # OpenAI embeddings (no output tokens)
    "text-embedding-3-small": (0.02, 0.0),
    "text-embedding-3-large": (0.13, 0.0),
    "text-embedding-ada-002": (0.10, 0.0),
    # Anthropic (the proposal's claude-3-haiku, through an OpenAI-compatible gateway)
    "claude-3-haiku": (0.25, 1.25),
    "claude-3-5-haiku": (0.80, 4.00),
    "claude-3-5-sonnet": (3.00, 15.00),
    "claude-3-7-sonnet": (3.00, 15.00),
    "claude-sonnet-4": (3.00, 15.00),
    "claude-3-opus": (15.00, 75.00),
}

# Each price's date and source: (as of, where). The providers' own pages are the authority
# (https://openai.com/api/pricing/, https://www.anthropic.com/pricing); "checked 2026-12-07" rows were
# compared that day against the dated public copies named, which quote those pages; the others carry
# PRICES_AS_OF, when they were taken from the providers' pages, and were not re-checked.
_OPENAI_PAGE = "https://openai.com/api/pricing/"
_ANTHROPIC_PAGE = "https://www.anthropic.com/pricing"
_RATE_CARDS = "oG-Memory perf/rate_cards.yaml (gitcode.com/akushonkamen/oG-Memory), seen 2026-12-07"
_COST_TABLE = "github.com/kunishou/GenerativeAI-Cost README, seen 2026-12-07"
PRICE_SOURCES: dict[str, tuple[str, str]] = {
    "gpt-4o-mini": ("2025-08; checked 2026-12-07", f"{_OPENAI_PAGE}; openrouter.ai/openai/gpt-4o-mini-2024-07-18 "
                                                   f"($0.15/$0.60), {_RATE_CARDS}"),
    "gpt-4o": ("2025-08; checked 2026-12-07", f"{_OPENAI_PAGE}; {_COST_TABLE} (gpt-4o-2024-08-06 $2.50/$10.00), "
                                              f"{_RATE_CARDS}"),
    "gpt-4.1": ("2025-08; checked 2026-12-07", f"{_OPENAI_PAGE}; {_RATE_CARDS}"),
    "gpt-4.1-mini": ("2025-08; checked 2026-12-07", f"{_OPENAI_PAGE}; {_RATE_CARDS}"),
    "o4-mini": ("2025-08; checked 2026-12-07", f"{_OPENAI_PAGE}; {_RATE_CARDS}"),
    "text-embedding-3-small": ("2025-08; checked 2026-12-07", f"{_OPENAI_PAGE}; {_RATE_CARDS}"),
    "text-embedding-3-large": ("2025-08; checked 2026-12-07", f"{_OPENAI_PAGE}; {_RATE_CARDS}"),
    "text-embedding-ada-002": ("2025-08; checked 2026-12-07", f"{_OPENAI_PAGE}; {_RATE_CARDS}"),
    "claude-3-haiku": ("2025-08; checked 2026-12-07", f"{_ANTHROPIC_PAGE}; {_COST_TABLE} ($0.25/$1.25)"),
    "claude-3-5-sonnet": ("2025-08; checked 2026-12-07", f"{_ANTHROPIC_PAGE}; {_COST_TABLE}"),
    "claude-3-opus": ("2025-08; checked 2026-12-07", f"{_ANTHROPIC_PAGE}; {_COST_TABLE}"),
    **{model: (PRICES_AS_OF, _OPENAI_PAGE) for model in ("gpt-4.1-nano", "gpt-5", "gpt-5-mini", "gpt-5-nano", "o3")},
    **{model: (PRICES_AS_OF, _ANTHROPIC_PAGE) for model in ("claude-3-5-haiku", "claude-3-7-sonnet", "claude-sonnet-4")},
}

Prices = dict[str, tuple[float, float]]


def _bare(model: str) -> str:
    """'openai/gpt-4o-mini' or 'anthropic/claude-3-haiku' (the proposal's names) -> the model id."""
    return model.rsplit("/", 1)[-1]


def price_for(model: str, prices: Prices | None = None) -> tuple[float, float] | None:
    """(input, output) USD per 1M tokens, or None when neither the overrides nor the table know the model.

    Looked up by exact id, then by the longest known prefix ("gpt-4o-mini-2024-07-18" -> "gpt-4o-mini",
    "claude-3-haiku-20240307" -> "claude-3-haiku"); overrides win over the table.
    """
    table = {**PRICES_PER_1M_TOKENS, **(prices or {})}
    name = _bare(model)
    if name in table:
        return tuple(table[name])
    matches = [known for known in table if name.startswith(known)]
    return tuple(table[max(matches, key=len)]) if matches else None


def cost_usd(model: str, tokens_in: int, tokens_out: int, prices: Prices | None = None) -> float | None:
    price = price_for(model, prices)
    if price is None:
        return None
    return (tokens_in * price[0] + tokens_out * price[1]) / 1_000_000


def unpriced_warning(model: str) -> str:
    return (f"no price known for model '{model}' (prices as of {PRICES_AS_OF}): cost unknown; "
            f"set api.prices = {{ \"{_bare(model)}\" = [input, output] }} (USD per 1M tokens) in the profile")
