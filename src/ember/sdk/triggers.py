"""The routes of triggers: bind an event source to a function at a qualifier (or to the
workflow event bus, or to a workflow), read what it has done, change it, pause, resume,
disable, enable and delete it.

Like ``ember.sdk.calls``, each function returns a ``Call`` that both clients send.

A source is a mapping with a ``kind`` and that kind's fields (``ember.model.trigger``):
``{"kind": "http", "path": "/orders"}``, ``{"kind": "timer", "schedule": "rate(5 minutes)"}``,
``{"kind": "mqtt", "topic": "sensors/#"}``, ``{"kind": "amqp", "queue": "jobs"}``,
``{"kind": "nats", "subject": "orders.*"}``, ``{"kind": "redis_stream", "streams": ["s"]}``,
``{"kind": "storage", "path": "/data/in"}``. The server fills in the other fields' defaults,
and never shows an HTTP source's ``api_key`` again: it reads back as ``"***"``.
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import cache
from typing import Any, Literal

import httpx
from pydantic import BaseModel

from ember.api.schemas import TriggerList, TriggerOut
from ember.sdk.calls import Call, _params, _segment

REDACTED = "***"
"""What the server shows instead of a secret source field (an HTTP trigger's ``api_key``)."""


def _trigger_out(response: httpx.Response) -> TriggerOut:
    return TriggerOut.model_validate_json(response.content)


def _trigger_list(response: httpx.Response) -> list[TriggerOut]:
    return TriggerList.model_validate_json(response.content).triggers


def _trigger_path(name: str, *rest: str) -> str:
    return "/".join(["/triggers", _segment(name), *rest])


def source_spec(source: Mapping[str, Any]) -> dict[str, Any]:
    """The source as the server stores it: checked, its defaults filled in and its values
    normalized (an HTTP path without its trailing ``/``, methods in capitals), so that it
    can be compared with a ``TriggerOut.source``. No request is sent.

    Raises:
        InvalidSpec: an unknown kind, or a missing, unknown or invalid field;
            ``details["errors"]`` names each one the way the server does (``source.topic``).
    """
    from pydantic import ValidationError

    from ember.control.validation import from_validation_error

    try:
        spec = _source_model().model_validate({"source": dict(source)})
    except ValidationError as exc:
        raise from_validation_error(exc) from exc
    dumped: dict[str, Any] = spec.source.model_dump(mode="json")  # type: ignore[attr-defined]
    return dumped


@cache
def _source_model() -> type[BaseModel]:
    # A model holding only ``source``, so that errors are named as the server names them.
    from pydantic import ConfigDict, create_model

    from ember.model.trigger import SourceSpec

    model: type[BaseModel] = create_model(
        "SourceOnly", __config__=ConfigDict(extra="forbid"), source=(SourceSpec, ...)
    )
    return model


# triggers ------------------------------------------------------------------------------------


def create_trigger(
    name: str,
    function: str | None,
    source: Mapping[str, Any],
    *,
    qualifier: str | int | None = None,
    description: str = "",
    target: Literal["function", "events", "workflow"] = "function",
    workflow: str | None = None,
) -> Call[TriggerOut]:
    """Bind an event source to a function at a qualifier, or to the workflow event bus;
    the trigger starts ``enabled``.

    Args:
        name: the trigger's name: a letter, then up to 63 letters, digits, ``-`` or ``_``.
        function: the function its events invoke; None with target ``events``.
        source: ``{"kind": ..., ...}``, see this module's docstring; an ``http`` source
            is served at ``/http{path}`` on the server's own port.
        qualifier: ``latest`` (when not given), a version number or an alias; an alias
            lets a new release move the trigger's traffic without touching the trigger.
            None with target ``events``.
        description: up to 256 characters.
        target: ``function`` (invoke it) or ``events``: publish each event on the
            workflow event bus, where it resumes executions waiting in ``listen`` and
            starts workflows whose ``schedule.on`` it completes (an ``http`` source then
            answers 202 with what the event reached); or ``workflow``: each event starts
            one execution of ``workflow`` with the event as its input (an ``http`` source
            answers 202 ``{"execution", "workflow", "created"}``).
        workflow: the deployed workflow its events start; with target ``workflow`` only.

    Returns:
        The trigger, with the ``status`` of its freshly started source (``connected``…).

    Raises:
        InvalidSpec: a bad name, kind or source field (``details["errors"]`` names each
        field: ``source.topic``, ``source.schedule``…). FunctionNotFound, VersionNotFound,
        AliasNotFound: the target does not exist. Conflict: a trigger has this name, or
        another HTTP trigger serves this path. InvalidSpec naming ``function`` (or
        ``qualifier``): one given with target ``events`` or ``workflow``, or none with
        target ``function``; naming ``workflow``: none with target ``workflow``, or one
        with another target. WorkflowNotFound: the workflow is not deployed.
    """
    body: dict[str, Any] = {"name": name, "target": target}
    if function is not None:
        body["function"] = function
    if qualifier is not None:
        body["qualifier"] = str(qualifier)
    if workflow is not None:
        body["workflow"] = workflow
    body |= {"source": dict(source), "description": description}
    return Call("POST", "/triggers", _trigger_out, json=body)


def get_trigger(name: str) -> Call[TriggerOut]:
    """The trigger with its ``status``: ``connected``, ``events``, ``invocations``,
    ``failures``, ``last_event_at``, ``last_error``, ``last_error_at`` and the source's own
    ``details`` (counters since the server started).

    Raises:
        TriggerNotFound: no trigger has this name.
    """
    return Call("GET", _trigger_path(name), _trigger_out)


def list_triggers(function: str | None = None) -> Call[list[TriggerOut]]:
    """Every trigger, by name, with its status; only those of ``function`` when given.

    Raises:
        FunctionNotFound: ``function`` does not exist.
    """
    return Call("GET", "/triggers", _trigger_list, params=_params(function=function))


def update_trigger(
    name: str,
    *,
    function: str | None = None,
    qualifier: str | int | None = None,
    source: Mapping[str, Any] | None = None,
    description: str | None = None,
    workflow: str | None = None,
) -> Call[TriggerOut]:
    """Change what is given; the rest stays. The state (enabled, paused…) is kept, and so
    is the target: a trigger with target ``events`` or ``workflow`` takes no function or
    qualifier, and only one with target ``workflow`` takes a workflow.

    Args:
        function, qualifier: a new target (checked to exist).
        workflow: another workflow to start (target ``workflow``; checked to exist).
        source: the new source, replacing the old one whole (fields not given take their
            defaults, not their old values).
        description: up to 256 characters.

    Returns:
        The trigger; its source is restarted when the target or the source changed.

    Raises:
        TriggerNotFound: no such trigger. InvalidSpec: a bad field (named as for
        ``create_trigger``). FunctionNotFound, VersionNotFound, AliasNotFound: no such
        target; WorkflowNotFound: no such workflow. Conflict: another HTTP trigger serves
        the new path.
    """
    patch: dict[str, Any] = {}
    if function is not None:
        patch["function"] = function
    if workflow is not None:
        patch["workflow"] = workflow
    if qualifier is not None:
        patch["qualifier"] = str(qualifier)
    if source is not None:
        patch["source"] = dict(source)
    if description is not None:
        patch["description"] = description
    return Call("PATCH", _trigger_path(name), _trigger_out, json=patch)


def delete_trigger(name: str) -> Call[TriggerOut]:
    """Stop the trigger's source and delete the trigger; returns what was deleted.

    Raises:
        TriggerNotFound: no such trigger.
    """
    return Call("DELETE", _trigger_path(name), _trigger_out)


def pause_trigger(name: str) -> Call[TriggerOut]:
    """Stop taking events (state ``paused``): the source stays connected and keeps what
    arrives (broker queues, streams) until it is resumed; an HTTP trigger answers 503.

    Raises:
        TriggerNotFound: no such trigger.
    """
    return Call("POST", _trigger_path(name, "pause"), _trigger_out)


def resume_trigger(name: str) -> Call[TriggerOut]:
    """Take events again (state ``enabled``), starting with those kept while paused.

    Raises:
        TriggerNotFound: no such trigger.
    """
    return Call("POST", _trigger_path(name, "resume"), _trigger_out)


def disable_trigger(name: str) -> Call[TriggerOut]:
    """Stop the trigger's source (state ``disabled``): it disconnects, and an HTTP trigger's
    path answers 404, until the trigger is enabled.

    Raises:
        TriggerNotFound: no such trigger.
    """
    return Call("POST", _trigger_path(name, "disable"), _trigger_out)


def enable_trigger(name: str) -> Call[TriggerOut]:
    """Start a disabled trigger's source again (state ``enabled``).

    Raises:
        TriggerNotFound: no such trigger.
    """
    return Call("POST", _trigger_path(name, "enable"), _trigger_out)
