"""Turns pydantic validation errors into InvalidSpec errors that name each field."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pydantic import ValidationError

from ember.errors import InvalidSpec


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
        # pydantic names the failing model validator's class in loc for union branches;
        # those positions carry no field name a user could act on.
        loc = [p for p in err.get("loc", ()) if p not in ("body", "function-after[_target()]")]
        message = str(err.get("msg", "invalid"))
        if err.get("type") == "extra_forbidden":
            message = "unknown field"
        found.append({"field": field_path(loc, prefix) or prefix or "body", "message": message})
    return found


def invalid_spec(errors: list[dict[str, str]]) -> InvalidSpec:
    summary = "; ".join(f"{e['field']}: {e['message']}" for e in errors[:5])
    if len(errors) > 5:
        summary += f"; and {len(errors) - 5} more"
    return InvalidSpec(f"invalid spec: {summary}", {"errors": errors})


def from_validation_error(exc: ValidationError, prefix: str = "") -> InvalidSpec:
    return invalid_spec(field_errors(exc.errors(), prefix))
