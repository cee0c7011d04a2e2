"""The explicit rules each Kura error is graded by (one point each, 0-4).

  names_subject   the message names the thing that is wrong: any of the case's subject words (the
                  field, file, setting, model or endpoint the case broke), case-insensitively
  says_expected   the message says what was expected: it matches EXPECTED ("expected", "must",
                  "should", "required", "valid", "allowed", "at least", "one of", "supported", ...);
                  a bare state ("not found", "No such file") does not count
  suggests_fix    the message suggests a fix: it matches FIX ("try", "please", "did you mean", "make
                  sure", "set OPENAI_API_KEY", "install", "pass", "provide", "check the", ...)
  raw_traceback   (a point when False) the user is left with a raw traceback: the exception is an
                  internal-error type (KeyError, AttributeError, TypeError, IndexError, JSONDecodeError,
                  ...) or a builtin exception raised from inside a third-party library (numpy,
                  sklearn, json, datasets, ...) rather than from Kura, pydantic, openai or instructor,
                  whose errors are meant for users

Outcomes other than an error: `hang` (no answer within the case's timeout) scores 0; `accepted` (bad
input taken without a word) scores 0; `silent` (Kura logged an error and went on, e.g. a checkpoint
that does not reload is recomputed) is graded on what it logged but its grade stays `silent`.
Grades: clear (score >= 3), partial (2), poor (<= 1), silent, hang.
"""

from __future__ import annotations

import builtins
import re
from dataclasses import dataclass

EXPECTED = re.compile(
    r"\b(expected|expecting|expects|must|should|required|requires|valid|allowed|at least|at most|one of|"
    r"supported|needs? to|has to|only accepts?)\b", re.IGNORECASE)
FIX = re.compile(
    r"(\btry\b|\bplease\b|did you mean|make sure|\binstall\b|\bpass (?:a|an|the)\b|\bprovide\b|"
    r"\bcheck (?:the|your|that)\b|\bto fix\b|\bconsider\b|\bexport [A-Z]|\bset (?:the|a|an|it)\b|"
    r"\bset(?:ting)? [A-Z][A-Z0-9_]{2,}|\bby setting\b|\bplease use\b|\byou can\b|\bcould not\b.*\binstead\b)")
INTERNAL_ERRORS = frozenset({
    "KeyError", "AttributeError", "TypeError", "IndexError", "ZeroDivisionError", "UnboundLocalError",
    "NameError", "RecursionError", "AssertionError", "JSONDecodeError", "StopIteration", "NotImplementedError",
    "UnicodeDecodeError", "OverflowError",
})
USER_FACING = ("kura", "pydantic", "pydantic_core", "openai", "instructor")


@dataclass(frozen=True)
class Grade:
    names_subject: bool
    says_expected: bool
    suggests_fix: bool
    raw_traceback: bool
    score: int
    grade: str


def names_subject(message: str, subjects: tuple[str, ...]) -> bool:
    low = message.lower()
    return any(s.lower() in low for s in subjects)


def is_raw(error_type: str, raised_in: str | None) -> bool:
    if error_type in INTERNAL_ERRORS:
        return True
    top = (raised_in or "").split(".")[0]
    return bool(top) and top not in USER_FACING and error_type in _BUILTIN_NAMES


_BUILTIN_NAMES = frozenset(name for name, value in vars(builtins).items()
                           if isinstance(value, type) and issubclass(value, BaseException))


def grade(outcome: str, message: str | None, error_type: str | None, raised_in: str | None,
          subjects: tuple[str, ...]) -> Grade:
    if outcome in ("hang", "accepted") or not message:
        return Grade(False, False, False, False, 0, "hang" if outcome == "hang" else "silent")
    named = names_subject(message, subjects)
    expected = bool(EXPECTED.search(message))
    fix = bool(FIX.search(message))
    raw = is_raw(error_type or "", raised_in) if outcome == "error" else False
    score = int(named) + int(expected) + int(fix) + int(not raw)
    if outcome == "silent":
        label = "silent"
    else:
        label = "clear" if score >= 3 else "partial" if score == 2 else "poor"
    return Grade(named, expected, fix, raw, score, label)
