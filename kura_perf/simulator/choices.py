"""Pick-one prompts: the prompt lists the allowed answers and the schema has a field for the choice.

A real model asked to "select exactly one of the following" answers one of the listed options
verbatim, and callers validate that (Kura's meta-clustering rejects any label that is not one of its
candidate names). So before a string field gets free text, we look for the options in the prompt:

- repeated tags: `<higher_level_cluster>A</higher_level_cluster><higher_level_cluster>B</...>`, i.e.
  one tag name with two or more distinct bodies, or a single one inside a container tag named after it
  (`<higher_level_clusters>`, `<option_list>`, `<options>`, `<choices>`, `<candidates>`);
- an enumerated list (`- A`, `* A`, `1. A`, `a) A`) of at least two short items right under a line
  that names the thing chosen ("Pick one of these categories:").

The options count only when the field is the thing chosen: the field's name and the tag's name are
the same (singular or plural) or one ends with the other (`chosen_category` / `<category>`), or the
list's heading names the field's noun; a generic field (`choice`, `answer`, `label`, ...) takes the
only option group there is. And the prompt must ask for a choice (select, choose, pick, classify,
categorise, assign, "one of", "which of"), so a repeated `<summary>` tag in a naming prompt is still
context, not options.

The option chosen is the one sharing most words with the rest of the prompt (the other tagged parts,
e.g. the item being classified), ties broken by a hash of prompt and option, so the choice is
deterministic and varies with the input.
"""

from __future__ import annotations

import re
import zlib
from dataclasses import dataclass

from kura_perf.simulator.text import _STOP_WORDS

_TAG_NAME = re.compile(r"<([A-Za-z_][\w-]*)(?:\s[^<>]*)?>")
_ANY_TAG = re.compile(r"</?[A-Za-z_][\w-]*(?:\s[^<>]*)?>")
_PLACEHOLDER = re.compile(r"^\[.*\]$", re.DOTALL)
_CHOICE_LANGUAGE = re.compile(
    r"\b(?:select\w*|choos\w*|chose|pick\w*|classif\w*|categori[sz]\w*|assign\w*|one of|which of)\b", re.IGNORECASE
)
_LIST_ITEM = re.compile(r"^\s*(?:[-*\u2022]|\d{1,2}[.)]|[A-Za-z][.)])\s+(.+?)\s*$")
_WORD = re.compile(r"[A-Za-z][A-Za-z0-9+#'-]*[A-Za-z0-9+#]|[A-Za-z]")
_CONTAINER_NAMES = ("options", "choices", "candidates", "option_list", "choice_list", "candidate_list")
_GENERIC_CHOICE_FIELDS = frozenset(
    "choice option answer selection selected label category class classification pick".split()
)
_MAX_TAG_NAMES = 64  # conversation text may hold HTML; the prompt's own structure has far fewer tags
_MAX_LIST_ITEM_WORDS = 12
_NUMBER_WORDS = {
    w: i for i, w in enumerate(
        "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen "
        "sixteen seventeen eighteen nineteen twenty".split()
    )
}


@dataclass(frozen=True)
class OptionGroup:
    """The options a prompt offers under one name (a tag's name or an enumerated list's heading)."""

    name: str
    options: tuple[str, ...]
    from_tags: bool
    spans: tuple[tuple[int, int], ...]  # where the options (and their container) sit in the prompt


def _tokens(name: str) -> list[str]:
    parts = [t for t in re.split(r"[^a-z0-9]+", name.lower()) if t]
    if parts:
        parts[-1] = singular(parts[-1])
    return parts


def singular(word: str) -> str:
    word = word.lower()
    if len(word) > 4 and word.endswith("ies"):
        return word[:-3] + "y"
    if len(word) > 4 and word.endswith(("ses", "xes", "ches", "shes")):
        return word[:-2]
    if len(word) > 3 and word.endswith("s") and not word.endswith("ss"):
        return word[:-1]
    return word


def _stem(word: str) -> str:
    word = word.lower().strip("'-")
    for suffix in ("ing", "ed", "es", "s"):
        if word.endswith(suffix) and len(word) - len(suffix) >= 3:
            word = word[: -len(suffix)]
            if suffix in ("ing", "ed") and len(word) > 3 and word[-1] == word[-2]:
                word = word[:-1]  # debugging -> debug
            break
    return word


def _clean_option(text: str) -> str:
    text = " ".join(text.split())
    if len(text) >= 2 and text[0] == text[-1] and text[0] in "\"'`":
        text = text[1:-1].strip()
    return text.strip("*_ ").strip()


def _tag_groups(raw: str) -> list[OptionGroup]:
    names: list[str] = []
    for match in _TAG_NAME.finditer(raw):
        if match.group(1) not in names:
            names.append(match.group(1))
            if len(names) >= _MAX_TAG_NAMES:
                break
    found: dict[str, list[re.Match]] = {}
    for name in names:
        pattern = re.compile(rf"<{re.escape(name)}(?:\s[^<>]*)?>(.*?)</{re.escape(name)}\s*>", re.DOTALL)
        matches = list(pattern.finditer(raw))
        if matches:
            found[name] = matches
    groups = []
    for name, matches in found.items():
        lowered = name.lower()
        containers = [
            m for other, ms in found.items() if other != name
            and (other.lower().startswith(lowered) or other.lower() in _CONTAINER_NAMES) for m in ms
        ]
        options: list[str] = []
        spans: list[tuple[int, int]] = []
        nested = False
        for match in matches:
            body = match.group(1)
            if _ANY_TAG.search(body):
                nested = True  # a container of other tags, not an option
                break
            option = _clean_option(body)
            if not option or _PLACEHOLDER.match(option):
                continue
            if option not in options:
                options.append(option)
            spans.append(match.span())
        if nested or not options:
            continue
        inside = [c for c in containers if any(c.start() <= s and e <= c.end() for s, e in spans)]
        if len(options) >= 2 or inside:
            spans.extend(c.span() for c in inside)
            groups.append(OptionGroup(name, tuple(options), True, tuple(spans)))
    return groups


def _list_groups(raw: str) -> list[OptionGroup]:
    groups = []
    lines = raw.splitlines(keepends=True)
    offsets = [0]
    for line in lines:
        offsets.append(offsets[-1] + len(line))
    i = 0
    while i < len(lines):
        heading = lines[i].strip()
        if not heading.endswith((":", "?")) or _LIST_ITEM.match(lines[i]):
            i += 1
            continue
        items: list[str] = []
        j = i + 1
        while j < len(lines):
            if not lines[j].strip():
                j += 1
                continue
            match = _LIST_ITEM.match(lines[j])
            if not match:
                break
            items.append(_clean_option(match.group(1)))
            j += 1
        short = [it for it in items if it and len(it.split()) <= _MAX_LIST_ITEM_WORDS and not it.endswith(":")]
        if len(items) >= 2 and len(short) == len(items) and len(set(items)) == len(items):
            groups.append(OptionGroup(heading, tuple(items), False, ((offsets[i + 1], offsets[j]),)))
            i = j
        else:
            i += 1
    return groups


def option_groups(raw: str, instructions: str | None = None) -> list[OptionGroup]:
    """Every group of options the prompt offers, if its instructions (by default the whole prompt)
    ask for a choice at all."""
    if not raw or not _CHOICE_LANGUAGE.search(raw if instructions is None else instructions):
        return []
    return _tag_groups(raw) + _list_groups(raw)


def _match_score(field: str, group: OptionGroup) -> int:
    wanted = _tokens(field)
    if not wanted:
        return 0
    if group.from_tags:
        offered = _tokens(group.name)
        if not offered:
            return 0
        if wanted == offered:
            return 4
        if wanted[-len(offered):] == offered or offered[-len(wanted):] == wanted:
            return 3
        return 0
    heading = {singular(w) for w in _WORD.findall(group.name)}
    return 2 if wanted[-1] in heading and wanted[-1] not in ("one", "item", "following") else 0


def group_for(field: str, groups: list[OptionGroup]) -> OptionGroup | None:
    """The options this field chooses from, if any."""
    if not groups:
        return None
    scored = [(_match_score(field, g), -k, g) for k, g in enumerate(groups)]
    best = max(scored, key=lambda t: (t[0], t[1]))
    if best[0] > 0:
        return best[2]
    if field.lower() in _GENERIC_CHOICE_FIELDS and len(groups) == 1:
        return groups[0]
    return None


def _words(text: str) -> set[str]:
    return {_stem(w) for w in _WORD.findall(text) if len(w) > 2 and w.lower() not in _STOP_WORDS}


def context_text(raw: str, group: OptionGroup, groups: list[OptionGroup]) -> str:
    """The prompt's text apart from the options: the other tagged parts when there are any (the item
    being classified), otherwise everything outside the option lists."""
    option_spans = [s for g in groups for s in g.spans]

    def outside(start: int, end: int) -> bool:
        return not any(s <= start and end <= e for s, e in option_spans) and not any(
            start <= s and e <= end for s, e in group.spans)

    tagged = []
    for match in re.finditer(r"<([A-Za-z_][\w-]*)(?:\s[^<>]*)?>(.*?)</\1\s*>", raw, re.DOTALL):
        if outside(*match.span()):
            tagged.append(_ANY_TAG.sub(" ", match.group(2)))
    if tagged:
        return "\n".join(tagged)
    pieces, last = [], 0
    for start, end in sorted(group.spans):
        pieces.append(raw[last:start])
        last = max(last, end)
    pieces.append(raw[last:])
    return "".join(pieces)


def choose(options: tuple[str, ...], context: str) -> str:
    """The option sharing most words with the context; ties by a hash of context and option."""
    seen = _words(context)

    def score(option: str) -> tuple[int, int]:
        shared = len(_words(option) & seen)
        return shared, zlib.crc32(f"{context}\x1f{option}".encode("utf-8"))

    return max(options, key=score)


def pick_option(raw: str, field: str, groups: list[OptionGroup] | None = None) -> str | None:
    """The option to answer for `field`, or None when the prompt offers it no options."""
    groups = option_groups(raw) if groups is None else groups
    group = group_for(field, groups)
    if group is None:
        return None
    return choose(group.options, context_text(raw, group, groups))


def requested_count(instructions: str, field: str) -> int | None:
    """How many items the instructions ask for in a list field: "create at most 3 higher-level cluster
    names" gives 3 for `candidate_cluster_names` (the number may be a word up to twenty)."""
    raw = instructions
    tokens = _tokens(field)
    if not raw or not tokens:
        return None
    noun = re.escape(tokens[-1])
    numbers = r"\d{1,3}|" + "|".join(_NUMBER_WORDS)
    pattern = re.compile(rf"\b({numbers})\s+(?:[\w-]+\s+){{0,4}}?{noun}(?:s|es)?\b", re.IGNORECASE)
    match = pattern.search(raw)
    if not match:
        return None
    value = match.group(1).lower()
    return int(value) if value.isdigit() else _NUMBER_WORDS[value]
