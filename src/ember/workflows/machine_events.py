"""Event consumption for ``listen``: filters evaluated when the task starts, then each
event offered in turn until the strategy (``one``, ``all``, ``any`` with ``until``) is met.

A filter's ``with`` is evaluated as a template on the task's input when the listen starts
(so ``orderId: ${ .id }`` waits for this execution's order) and compared with the event: an
attribute equals, a mapping (``data: {status: shipped}``) matches when every key it names
matches, recursively. ``correlate.<key>.from`` is evaluated on the event (the CloudEvent
envelope as ``.``); with ``expect`` the value must equal it, without, the first matched
event sets the value the others must have. One event fills at most one filter of ``all``.
"""

from __future__ import annotations

import hashlib
from typing import Any

import orjson

from ember.workflows.dataflow import transform
from ember.workflows.expressions import evaluate_template
from ember.workflows.model import EventConsumption


def event_key(event: dict[str, Any]) -> str:
    """What makes an event the same event when delivered twice: ``source`` and ``id``
    (the CloudEvents identity), else a digest of its content."""
    if event.get("id") is not None:
        return f"{event.get('source')}|{event['id']}"
    digest = hashlib.sha256(orjson.dumps(event, option=orjson.OPT_SORT_KEYS)).hexdigest()
    return f"sha256:{digest}"


def prepare(to: EventConsumption, value: Any, variables: dict[str, Any]) -> dict[str, Any]:
    """The listen's state: its filters as evaluated now, and what has matched so far."""
    filters = []
    for event_filter in to.filters:
        correlate: dict[str, dict[str, Any]] = {}
        for name, (source, expect) in event_filter.correlate.items():
            correlate[name] = {"from": source}
            if expect is not None:
                correlate[name]["expect"] = evaluate_template(expect, value, variables)
        rendered = evaluate_template(event_filter.with_, value, variables)
        filters.append({"with": rendered, "correlate": correlate})
    until = to.until
    return {
        "filters": filters,
        "matched": [None] * len(filters),
        "consumed": [],
        "correlation": {},
        "until": prepare(until, value, variables) if isinstance(until, EventConsumption) else None,
    }


def offer(
    to: EventConsumption,
    state: dict[str, Any],
    event: dict[str, Any],
    variables: dict[str, Any],
    where: str = "/listen/to",
) -> tuple[bool, list[dict[str, Any]] | None]:
    """Offer ``event``: whether it matched (and was consumed), and the events consumed
    once the strategy is met (None while it is not). ``where`` locates errors (the task's
    ``…/listen/to``).

    Raises ``WorkflowError`` when a correlation or ``until`` expression fails."""
    until = to.until
    if isinstance(until, EventConsumption):
        matched, done = offer(until, state["until"], event, variables, f"{where}/until")
        if done is not None:
            return True, list(state["consumed"])
        if matched:
            return True, None
    for index, event_filter in enumerate(state["filters"]):
        if to.kind == "all" and state["matched"][index] is not None:
            continue
        values = _matches(event_filter, event, state["correlation"], variables, where)
        if values is None:
            continue
        state["correlation"].update(values)
        if to.kind == "one":
            return True, [event]
        if to.kind == "all":
            state["matched"][index] = event
            if all(found is not None for found in state["matched"]):
                return True, list(state["matched"])
            return True, None
        state["consumed"].append(event)
        if until is None:
            return True, list(state["consumed"])
        if isinstance(until, str):
            done_now = transform(until, state["consumed"], variables, instance=f"{where}/until")
            if done_now is not None and done_now is not False:
                return True, list(state["consumed"])
        return True, None
    return False, None


def _matches(
    event_filter: dict[str, Any],
    event: dict[str, Any],
    correlation: dict[str, Any],
    variables: dict[str, Any],
    where: str,
) -> dict[str, Any] | None:
    for attribute, wanted in event_filter["with"].items():
        if attribute not in event or not _contains(event[attribute], wanted):
            return None
    values: dict[str, Any] = {}
    for name, spec in event_filter["correlate"].items():
        at = f"{where}/correlate/{name}/from"
        value = transform(spec["from"], event, variables, instance=at)
        expected = spec["expect"] if "expect" in spec else correlation.get(name, value)
        if value != expected:
            return None
        values[name] = value
    return values


def _contains(actual: Any, wanted: Any) -> bool:
    if isinstance(wanted, dict):
        return isinstance(actual, dict) and all(
            key in actual and _contains(actual[key], item) for key, item in wanted.items()
        )
    return bool(actual == wanted)


def read(event: dict[str, Any], mode: str) -> Any:
    """What a listen outputs of an event: its ``data`` (``data``, ``raw``) or the whole
    envelope (``envelope``)."""
    return event if mode == "envelope" else event.get("data")
