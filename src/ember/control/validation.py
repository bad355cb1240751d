"""Turns pydantic validation errors into InvalidSpec errors that name each field."""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from pydantic import ValidationError

from ember.errors import InvalidSpec
from ember.model.trigger import SOURCE_KINDS

# Fields holding a tagged union, and their tags (trigger sources by kind).
UNION_FIELDS = frozenset({"source"})
_NAMED = re.compile(r"^([a-z_]+): ")
UNION_TAGS = frozenset(SOURCE_KINDS)


def field_path(loc: Sequence[int | str], prefix: str = "") -> str:
    parts = [prefix] if prefix else []
    for item in loc:
        if isinstance(item, int):
            parts[-1:] = [f"{parts[-1]}[{item}]"] if parts else [f"[{item}]"]
        else:
            parts.append(str(item))
    return ".".join(parts)


def field_errors(errors: Sequence[Any], prefix: str = "") -> list[dict[str, str]]:
    found = []
    for err in errors:
        # pydantic names a tagged union's tag (``source.mqtt.topic``) and the failing
        # model validator of a union branch in loc; neither is a field a user wrote.
        raw = list(err.get("loc", ()))
        loc = [
            p for i, p in enumerate(raw)
            if p not in ("body", "function-after[_target()]")
            and not (i > 0 and raw[i - 1] in UNION_FIELDS and p in UNION_TAGS)
        ]
        message = str(err.get("msg", "invalid")).removeprefix("Value error, ")
        if err.get("type") == "extra_forbidden":
            message = "unknown field"
        named = _NAMED.match(message)
        if named and err.get("type") == "value_error":
            # A rule across fields names the one to change first: "app: ...".
            loc = [*loc, named.group(1)]
            message = message[named.end():]
        found.append({"field": field_path(loc, prefix) or prefix or "body", "message": message})
    return found


def invalid_spec(errors: list[dict[str, str]]) -> InvalidSpec:
    summary = "; ".join(f"{e['field']}: {e['message']}" for e in errors[:5])
    if len(errors) > 5:
        summary += f"; and {len(errors) - 5} more"
    return InvalidSpec(f"invalid spec: {summary}", {"errors": errors})


def from_validation_error(exc: ValidationError, prefix: str = "") -> InvalidSpec:
    return invalid_spec(field_errors(exc.errors(), prefix))
