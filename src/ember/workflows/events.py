"""CloudEvents as the event bus takes them (``POST /events``, ``emit``, triggers)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from ember.control.validation import invalid_spec
from ember.ids import new_id

SPECVERSION = "1.0"
_REQUIRED = ("type", "source")
_STRING_ATTRIBUTES = ("id", "type", "source", "subject", "datacontenttype", "dataschema",
                      "time")


@dataclass(frozen=True)
class PublishResult:
    """What an event reached: ``executions`` that took it, ``schedules`` that started an
    execution; ``retained`` when nothing took it (it waits for a listen), ``duplicate``
    when an event with its ``source`` and ``id`` came before (nothing was done)."""

    id: str
    executions: int
    schedules: int
    retained: bool
    duplicate: bool


def normalize_event(event: Any, now: datetime) -> dict[str, Any]:
    """The event in structured form, with ``specversion``, ``id`` and ``time`` filled in
    when missing. Raises InvalidSpec naming each missing or wrong attribute."""
    if not isinstance(event, dict):
        raise invalid_spec([{"field": "body", "message": "a CloudEvent is a JSON object"}])
    errors = []
    for name in _REQUIRED:
        value = event.get(name)
        if not isinstance(value, str) or not value:
            errors.append({"field": name, "message": f"the CloudEvent attribute {name!r} is "
                                                     "required (a non-empty string)"})
    for name in _STRING_ATTRIBUTES:
        if name in event and event[name] is not None and not isinstance(event[name], str):
            errors.append({"field": name, "message": "must be a string"})
    version = event.get("specversion", SPECVERSION)
    if version != SPECVERSION:
        errors.append({"field": "specversion", "message": f"must be {SPECVERSION!r}"})
    if errors:
        raise invalid_spec(errors)
    normalized = dict(event)
    normalized["specversion"] = SPECVERSION
    if not normalized.get("id"):
        normalized["id"] = new_id()
    if not normalized.get("time"):
        normalized["time"] = now.isoformat().replace("+00:00", "Z")
    return normalized
