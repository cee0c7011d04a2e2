"""Example user steps for the custom pipeline shape, and how a step named "module:function" is loaded.

A step takes the output of the stage it follows (a StageData: `.tables` of DataFrames, `.arrays` of
numpy arrays, as that stage stores them) and returns the transformed output, with the same tables and
arrays, which every later stage then reads. The shipped example, `redact_pii`, masks e-mail addresses,
phone numbers, URLs, IP addresses and card-like numbers in the summaries before they are embedded and
clustered: the step a team would add before sending summaries to a hosted embedding API.
"""

from __future__ import annotations

import importlib
import re
from typing import Callable

import pandas as pd

from kura_perf.errors import ProfileError
from kura_perf.files.outputs import StageData

Step = Callable[[StageData], StageData]

DEFAULT_STEP = "kura_perf.pipeline.custom_steps:redact_pii"
DEFAULT_AFTER = "summaries"

# Order matters: card numbers and phone numbers before the looser patterns could split them.
PII_PATTERNS: tuple[tuple[str, re.Pattern], ...] = (
    ("[EMAIL]", re.compile(r"\b[\w.+-]+@[\w-]+(?:\.[\w-]+)+\b")),
    ("[URL]", re.compile(r"\bhttps?://\S+|\bwww\.\S+", re.IGNORECASE)),
    ("[IP]", re.compile(r"\b(?:\d{1,3}\.){3}\d{1,3}\b")),
    ("[CARD]", re.compile(r"\b(?:\d[ -]?){13,16}\b")),
    ("[PHONE]", re.compile(r"(?<!\w)\+?\d[\d ().-]{7,}\d\b")),
)
TEXT_COLUMNS = ("summary", "request", "task", "embed_text")


def redact_text(text: str) -> tuple[str, int]:
    """The text with PII masked, and how many spans were masked."""
    count = 0
    for token, pattern in PII_PATTERNS:
        text, n = pattern.subn(token, text)
        count += n
    return text, count


def redact_pii(data: StageData) -> StageData:
    """Mask PII in the summaries' text columns (rows and ids unchanged). Needs `after = "summaries"`."""
    table = data.tables.get("main")
    if table is None or "summary" not in table.columns:
        raise ProfileError("custom step redact_pii: expects the summaries stage's output (a 'main' table with a "
                           "'summary' column); set custom_step.after = \"summaries\"")
    out = table.copy()
    redacted = 0
    for column in (c for c in TEXT_COLUMNS if c in out.columns):
        pairs = [redact_text(v) if isinstance(v, str) else (v, 0) for v in out[column]]
        out[column] = pd.Series([p[0] for p in pairs], index=out.index, dtype=object)
        redacted += sum(p[1] for p in pairs)
    out.attrs["redacted_spans"] = redacted
    return StageData(tables={**data.tables, "main": out}, arrays=dict(data.arrays))


def load_step(spec: str, setting: str = "custom_step.callable") -> Step:
    """Import "module:function"; a clear error naming the setting when it cannot be used."""
    module_name, sep, attr = spec.partition(":")
    if not sep or not module_name or not attr:
        raise ProfileError(f"{setting}: '{spec}': expected 'module:function', e.g. '{DEFAULT_STEP}'")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ProfileError(f"{setting}: '{spec}': cannot import module '{module_name}' ({exc}); is it on "
                           "PYTHONPATH?") from None
    step = getattr(module, attr, None)
    if step is None:
        raise ProfileError(f"{setting}: '{spec}': module '{module_name}' has no attribute '{attr}'")
    if not callable(step):
        raise ProfileError(f"{setting}: '{spec}': '{attr}' is a {type(step).__name__}, not a function")
    return step


def apply_step(step: Step, spec: str, data: StageData) -> StageData:
    """Run the step and check it kept the shape of the stage's output, which later stages rely on."""
    out = step(data)
    if not isinstance(out, StageData):
        raise ProfileError(f"custom step '{spec}' returned {type(out).__name__}; expected a StageData "
                           "(kura_perf.files.outputs.StageData) with the same tables and arrays it was given")
    if set(out.tables) != set(data.tables) or set(out.arrays) != set(data.arrays):
        raise ProfileError(f"custom step '{spec}' changed the output's parts: got tables {sorted(out.tables)} and "
                           f"arrays {sorted(out.arrays)}, expected tables {sorted(data.tables)} and arrays "
                           f"{sorted(data.arrays)}")
    return out
