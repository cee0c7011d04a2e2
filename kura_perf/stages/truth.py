"""Ground truth at several levels, read from the stored conversations table.

Real taxonomies have levels (CLINC150: 10 domains over 150 intents), and Kura builds a hierarchy, so
quality is scored at every hierarchy level against each truth level. A profile names its truth levels
coarse to fine (`truth_levels`, default ["topic"]): each is a field of the stored conversation, either
the top-level `topic` column or a dotted path into the conversation's metadata ("metadata.domain";
the conversations table keeps metadata as a JSON string, kura_perf/backends/conversion.py).

A truth level with a value missing for any conversation is not scored (None): a partial truth would
score a clustering against a different set of rows than the other levels.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Sequence

if TYPE_CHECKING:  # pandas is imported where rows are read: the profile schema imports this module
    import pandas as pd

DEFAULT_TRUTH_LEVELS = ("topic",)
TRUTH_ROOTS = ("topic", "metadata")  # the stored conversation fields a truth level can name


def path_problem(field: str) -> str | None:
    """Why `field` cannot name a truth level, or None when it can."""
    if not isinstance(field, str) or not field.strip():
        return "a truth level must be a non-empty string"
    root, _, rest = field.partition(".")
    if root == "topic" and not rest:
        return None
    if root == "metadata" and rest and all(part.strip() for part in rest.split(".")):
        return None
    return (f"'{field}' is not a stored conversation field: use 'topic' or a dotted path into the "
            f"metadata such as 'metadata.domain'")


def _dig(metadata, keys: list[str]):
    value = metadata
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError:
            return None
    for key in keys:
        if not isinstance(value, dict) or key not in value:
            return None
        value = value[key]
    if value is None or isinstance(value, (dict, list)):
        return None
    return str(value)


def truth_values(conversations: pd.DataFrame, field: str) -> pd.Series:
    """One value per conversation (index chat_id) for the truth level `field`; None where missing."""
    import pandas as pd

    root, _, rest = field.partition(".")
    if root == "topic" and not rest:
        values = conversations["topic"] if "topic" in conversations else pd.Series([None] * len(conversations))
        values = [None if pd.isna(v) else str(v) for v in values]
    elif root == "metadata" and "metadata" in conversations:
        keys = rest.split(".")
        values = [_dig(meta, keys) for meta in conversations["metadata"]]
    else:
        values = [None] * len(conversations)
    return pd.Series(values, index=conversations["chat_id"].tolist(), dtype=object)


def truths_for(conversations: pd.DataFrame, chat_ids: Sequence[str],
               truth_levels: Sequence[str] = DEFAULT_TRUTH_LEVELS) -> dict[str, list | None]:
    """{truth level: values in `chat_ids` order, or None when any is missing}, coarse to fine."""
    out: dict[str, list | None] = {}
    for field in truth_levels:
        values = truth_values(conversations, field).reindex(list(chat_ids))
        out[field] = None if values.isna().any() else values.tolist()
    return out


def finest_truth(conversations: pd.DataFrame, chat_ids: Sequence[str],
                 truth_levels: Sequence[str] = DEFAULT_TRUTH_LEVELS) -> list | None:
    """The finest truth level's values (the last in the list): what a stage record's own ARI/NMI use."""
    finest = list(truth_levels)[-1]
    return truths_for(conversations, chat_ids, [finest])[finest]
