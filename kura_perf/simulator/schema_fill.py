"""Build a JSON value that is valid against a JSON schema, with text taken from the prompt.

Covers what pydantic and the openai SDK emit: $ref into $defs/definitions, anyOf/oneOf (Optional),
allOf, type lists, enum/const, string length and common formats, integer/number bounds (inclusive
and exclusive, multipleOf), arrays (items, min/maxItems, uniqueItems), nested objects (every declared
property is filled, so `required` always holds). String fields get text chosen by their name
(summary, request, task, description, name, ...) so structured answers vary with the input.

Two things come from the prompt's instructions rather than its payload (see choices.py): a string
field that picks one of the options the prompt lists gets one of them verbatim, and a list whose
length the prompt states ("create at most 3 higher-level cluster names") gets that many items.
A list of names gets distinct names.
"""

from __future__ import annotations

import math
from typing import Any

from kura_perf.simulator.choices import OptionGroup, option_groups, pick_option, requested_count
from kura_perf.simulator.text import PromptView, is_name_field

_MAX_DEPTH = 12
_MAX_REQUESTED_ITEMS = 50
_FORMATS = {
    "date-time": "2024-01-01T00:00:00Z",
    "date": "2024-01-01",
    "time": "00:00:00Z",
    "email": "user@example.com",
    "uri": "https://example.com/",
    "url": "https://example.com/",
    "uuid": "00000000-0000-4000-8000-000000000000",
    "ipv4": "127.0.0.1",
}


class SchemaFiller:
    def __init__(self, root: dict, view: PromptView):
        self.root = root
        self.view = view

    @property
    def groups(self) -> list[OptionGroup]:
        if not hasattr(self, "_groups"):
            self._groups = option_groups(self.view.prompt, self.view.instructions)
        return self._groups

    def fill(self) -> Any:
        return self._value(self.root, "value", 0)

    # --- dispatch ----------------------------------------------------------------------------
    def _resolve(self, schema: dict) -> dict:
        seen = 0
        while isinstance(schema, dict) and "$ref" in schema and seen < 32:
            target: Any = self.root
            for part in schema["$ref"].lstrip("#").strip("/").split("/"):
                if part:
                    target = target[part.replace("~1", "/").replace("~0", "~")]
            extra = {k: v for k, v in schema.items() if k != "$ref"}
            schema = {**target, **extra}
            seen += 1
        return schema if isinstance(schema, dict) else {}

    def _value(self, schema: Any, field: str, depth: int) -> Any:
        if schema is True or not isinstance(schema, dict):
            return self.view.text_for(field)
        schema = self._resolve(schema)
        if "const" in schema:
            return schema["const"]
        if "enum" in schema and schema["enum"]:
            options = schema["enum"]
            return options[self.view.seed(field) % len(options)]
        for key in ("anyOf", "oneOf"):
            if schema.get(key):
                options = [self._resolve(o) for o in schema[key]]
                usable = [o for o in options if o.get("type") != "null"] or options
                return self._value(usable[0], field, depth + 1)
        if schema.get("allOf"):
            merged: dict = {k: v for k, v in schema.items() if k != "allOf"}
            for part in schema["allOf"]:
                part = self._resolve(part)
                merged.setdefault("properties", {}).update(part.get("properties", {}))
                merged["required"] = sorted(set(merged.get("required", [])) | set(part.get("required", [])))
                for k, v in part.items():
                    if k not in ("properties", "required"):
                        merged.setdefault(k, v)
            return self._value(merged, field, depth + 1)
        kind = schema.get("type")
        if isinstance(kind, list):
            non_null = [k for k in kind if k != "null"]
            kind = non_null[0] if non_null else "null"
        if kind is None:
            kind = "object" if "properties" in schema else "array" if "items" in schema else "string"
        if depth > _MAX_DEPTH:
            return _minimal(kind)
        return getattr(self, f"_{kind}", self._string)(schema, field, depth)

    # --- one method per JSON type ------------------------------------------------------------
    def _object(self, schema: dict, field: str, depth: int) -> dict:
        props = schema.get("properties", {})
        return {name: self._value(sub, name, depth + 1) for name, sub in props.items()}

    def _array(self, schema: dict, field: str, depth: int) -> list:
        lo = int(schema.get("minItems", 0))
        hi = schema.get("maxItems")
        key = field.lower()
        wanted = 0 if "error" in key else (3 if any(w in key for w in ("keyword", "tag", "topic")) else 1)
        asked = requested_count(self.view.instructions, field)
        if asked is not None:
            wanted = min(asked, _MAX_REQUESTED_ITEMS)
        count = max(lo, wanted)
        if hi is not None:
            count = min(count, int(hi))
        items = schema.get("items", {})
        if isinstance(items, list):  # tuple form
            return [self._value(s, field, depth + 1) for s in items]
        singular = field[:-1] if field.endswith("s") else field
        out: list = []
        for i in range(count):
            value = self._value(items, singular, depth + 1)
            if isinstance(value, str) and any(w in key for w in ("keyword", "tag", "topic")):
                value = (self.view.salient + [f"{singular}{j}" for j in range(count)])[i]
            elif isinstance(value, str) and is_name_field(singular) and value == self.view.name():
                value = self.view.name(i)  # distinct names, not one name repeated
                if value in out:
                    value = f"{value} {i + 1}"
            if schema.get("uniqueItems") and value in out:
                value = f"{value} {i}" if isinstance(value, str) else value + i if isinstance(value, int) else value
            out.append(value)
        return out

    def _string(self, schema: dict, field: str, depth: int) -> str:
        fmt = schema.get("format")
        text = _FORMATS.get(fmt) if fmt else None
        lo, hi = int(schema.get("minLength", 0)), schema.get("maxLength")
        if text is None:
            option = pick_option(self.view.prompt, field, self.groups)
            if option is not None and lo <= len(option) <= (int(hi) if hi is not None else len(option)):
                return option
            text = self.view.text_for(field)
        if len(text) < lo:
            text = text + "." * (lo - len(text))
        if hi is not None and len(text) > int(hi):
            text = text[: int(hi)]
        return text

    def _integer(self, schema: dict, field: str, depth: int) -> int:
        lo, hi = _bounds(schema, integer=True)
        step = schema.get("multipleOf")
        span = hi - lo + 1
        if any(w in field.lower() for w in ("concern", "frustration", "harm", "risk")):
            span = min(span, 2)  # most conversations are benign and calm
        value = lo + self.view.seed(field) % span
        if step:
            step = int(step)
            value = math.ceil(value / step) * step
            if value > hi:
                value -= step
        return int(value)

    def _number(self, schema: dict, field: str, depth: int) -> float:
        lo, hi = _bounds(schema, integer=False)
        fraction = (self.view.seed(field) % 1000) / 1000.0
        return round(lo + (hi - lo) * fraction, 6)

    def _boolean(self, schema: dict, field: str, depth: int) -> bool:
        return bool(self.view.seed(field) % 2)

    def _null(self, schema: dict, field: str, depth: int) -> None:
        return None


def _bounds(schema: dict, integer: bool) -> tuple[float, float]:
    """Inclusive (lo, hi); unbounded sides default to a small span so numbers look like scores."""
    nudge = 1 if integer else 1e-6
    lo = schema.get("minimum")
    hi = schema.get("maximum")
    exclusive_lo = schema.get("exclusiveMinimum")
    exclusive_hi = schema.get("exclusiveMaximum")
    if isinstance(exclusive_lo, (int, float)) and not isinstance(exclusive_lo, bool):
        lo = exclusive_lo + nudge if lo is None else max(lo, exclusive_lo + nudge)
    if isinstance(exclusive_hi, (int, float)) and not isinstance(exclusive_hi, bool):
        hi = exclusive_hi - nudge if hi is None else min(hi, exclusive_hi - nudge)
    if lo is None and hi is None:
        lo, hi = 1, 5
    elif lo is None:
        lo = hi - 4
    elif hi is None:
        hi = lo + 4
    if integer:
        lo, hi = math.ceil(lo), math.floor(hi)
    return lo, max(lo, hi)


def _minimal(kind: str) -> Any:
    return {"object": {}, "array": [], "string": "", "integer": 0, "number": 0.0, "boolean": False}.get(kind)


def fill_schema(schema: dict, view: PromptView) -> Any:
    return SchemaFiller(schema, view).fill()
