"""The routes of workflows: deploy a Serverless Workflow DSL 1.0 document, read, list and
delete workflows; run them and follow, list and cancel their executions; publish CloudEvents
to the event bus that ``listen`` tasks and ``schedule.on`` wait on.

Like ``ember.sdk.calls``, each function returns a ``Call`` that both clients send.

    ember.deploy_workflow("orders", Path("orders.yaml").read_text())
    execution = ember.run_workflow("orders", {"id": 17}, wait_s=30)
    print(execution.status, execution.output)
    ember.send_event("com.shop.shipped", {"id": 17})

An execution's ``status`` is ``running``, ``waiting`` (on events or a timer), or final:
``succeeded`` (with ``output``), ``failed`` (with ``error``, the spec's problem details)
or ``cancelled``.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from typing import Any

import httpx
import orjson

from ember.api.schemas import (
    EventOut,
    ExecutionList,
    ExecutionOut,
    WorkflowDeployOut,
    WorkflowList,
    WorkflowOut,
)
from ember.sdk.calls import Call, _model, _params, _segment

MAX_WAIT_S = 900.0
"""The longest one request may wait on the server for an execution to end (``wait_s``)."""

CLOUDEVENTS_JSON = "application/cloudevents+json"

# How much longer than the server's wait an answer may take to arrive before httpx gives up.
_WAIT_MARGIN_S = 15.0


def _workflow_path(name: str, *rest: str) -> str:
    return "/".join(["/workflows", _segment(name), *rest])


def _execution_path(execution_id: str, *rest: str) -> str:
    return "/".join(["/executions", _segment(execution_id), *rest])


def _waiting(wait_s: float | None) -> float | None:
    return wait_s + _WAIT_MARGIN_S if wait_s else None


def _nothing(response: httpx.Response) -> None:
    return None


def document_type(document: str | bytes) -> str:
    """The content type of a document given as text: JSON when it reads as a JSON object,
    else YAML."""
    text = document.lstrip() if isinstance(document, bytes) else document.lstrip().encode()
    return "application/json" if text[:1] == b"{" else "application/yaml"


# workflows -----------------------------------------------------------------------------------


def deploy_workflow(
    name: str, document: str | bytes | Mapping[str, Any], content_type: str | None = None,
) -> Call[WorkflowDeployOut]:
    """Save a workflow document as the workflow's next revision (creating the workflow).

    Args:
        name: the workflow's name; it must be the document's ``document.name``.
        document: the document as YAML or JSON text, or as a mapping (sent as JSON).
        content_type: ``application/json`` or ``application/yaml``; by default JSON for a
            mapping or a text starting with ``{``, else YAML.

    Returns:
        The workflow with its new latest revision; ``changed`` is False when the latest
        revision already had this document (nothing was saved).

    Raises:
        InvalidSpec: the document is not valid, uses something Ember does not support, or
            names another workflow: ``details["errors"]`` lists each problem with its path
            (``do[0].charge.call``). PayloadTooLarge: the document is over 1 MiB.
    """
    if isinstance(document, Mapping):
        content = orjson.dumps(dict(document))
        media = content_type or "application/json"
    else:
        content = document.encode() if isinstance(document, str) else bytes(document)
        media = content_type or document_type(document)
    return Call("PUT", _workflow_path(name), _model(WorkflowDeployOut), content=content,
                headers={"Content-Type": media})


def get_workflow(name: str) -> Call[WorkflowOut]:
    """The workflow, its latest revision's number, namespace, version and document.

    Raises:
        WorkflowNotFound: no workflow has this name.
    """
    return Call("GET", _workflow_path(name), _model(WorkflowOut))


def list_workflows(
    *, prefix: str = "", limit: int | None = None, cursor: str | None = None,
) -> Call[WorkflowList]:
    """One page of workflows by name (without their documents); ``next_cursor`` fetches the
    next.

    Args:
        prefix: only names starting with it.
        limit: page size, 1 to 1000 (the server's default is 100).
        cursor: the ``next_cursor`` of the previous page.

    Raises:
        InvalidRequest: ``limit`` is out of range.
    """
    params = _params(prefix=prefix or None, limit=limit, cursor=cursor)
    return Call("GET", "/workflows", _model(WorkflowList), params=params)


def delete_workflow(name: str, force: bool = False) -> Call[None]:
    """Delete the workflow and all its revisions.

    Args:
        force: cancel its running and waiting executions first, instead of refusing.

    Raises:
        WorkflowNotFound: no such workflow. Conflict: executions of it are running or
        waiting (``details["running"]`` counts them) and ``force`` is False.
    """
    params = {"force": "true"} if force else {}
    return Call("DELETE", _workflow_path(name), _nothing, params=params)


# executions ----------------------------------------------------------------------------------


def run_workflow(
    name: str, input: Any = None, *, idempotency_key: str | None = None,
    wait_s: float | None = None,
) -> Call[ExecutionOut]:
    """Start an execution of the workflow's latest revision.

    Args:
        input: the workflow's input, any JSON value.
        idempotency_key: 1 to 256 characters; a key this workflow's executions used before
            starts nothing and returns that execution.
        wait_s: wait up to this many seconds (at most 900) for the execution to end before
            answering; by default the answer comes once it has started.

    Returns:
        The execution with its history: final, or ``running`` / ``waiting`` when the wait
        was over first.

    Raises:
        WorkflowNotFound: no such workflow. InvalidRequest: a bad key or ``wait_s`` out of
        range. PayloadTooLarge: the input is over the sync payload limit.
    """
    headers = {} if idempotency_key is None else {"X-Ember-Idempotency-Key": idempotency_key}
    return Call(
        "POST", _workflow_path(name, "executions"), _model(ExecutionOut),
        params=_params(wait_s=wait_s or None), json={"input": input}, headers=headers,
        min_timeout=_waiting(wait_s),
    )


def get_execution(execution_id: str, wait_s: float | None = None, *,
                  history: bool = True) -> Call[ExecutionOut]:
    """An execution: its status, input, output or error, the history of its task instances
    and the progress of its ``for`` tasks.

    Args:
        wait_s: wait up to this many seconds (at most 900) for it to end before answering.
        history: False leaves the history out (``history`` is None).

    Raises:
        ExecutionNotFound: no such execution. InvalidRequest: ``wait_s`` is out of range.
    """
    params = _params(wait_s=wait_s or None, history=None if history else "false")
    return Call("GET", _execution_path(execution_id), _model(ExecutionOut), params=params,
                min_timeout=_waiting(wait_s))


def list_executions(
    workflow: str | None = None, status: str | Sequence[str] | None = None, *,
    limit: int | None = None, cursor: str | None = None,
) -> Call[ExecutionList]:
    """One page of executions, newest first, without their history.

    Args:
        workflow: only this workflow's.
        status: only those with this status, or with one of these (``running``,
            ``waiting``, ``succeeded``, ``failed``, ``cancelled``).
        limit: page size, 1 to 1000 (the server's default is 100).
        cursor: the ``next_cursor`` of the previous page.

    Raises:
        WorkflowNotFound: ``workflow`` does not exist. InvalidRequest: an unknown status, or
        ``limit`` out of range.
    """
    statuses = [status] if isinstance(status, str) else list(status or [])
    # QueryParams: a mapping that holds a key more than once (status=a&status=b).
    params = httpx.QueryParams(_params(workflow=workflow, limit=limit, cursor=cursor))
    for value in statuses:
        params = params.add("status", value)
    return Call("GET", "/executions", _model(ExecutionList), params=params)


def cancel_execution(execution_id: str) -> Call[ExecutionOut]:
    """Cancel a running or waiting execution: its running function steps are stopped and
    its timers and listens dropped. A finished execution is returned unchanged.

    Raises:
        ExecutionNotFound: no such execution.
    """
    return Call("POST", _execution_path(execution_id, "cancel"), _model(ExecutionOut))


# events --------------------------------------------------------------------------------------


def send_event(
    type: str, data: Any = None, *, source: str = "ember.cli", subject: str | None = None,
    id: str | None = None, extensions: Mapping[str, Any] | None = None,
) -> Call[EventOut]:
    """Publish a CloudEvent (structured mode) to the event bus: executions listening for
    it go on, and schedules (``schedule.on``) waiting for it count it.

    Args:
        type: the event's ``type`` (``com.shop.shipped``).
        data: its ``data``, any JSON value; None sends no data.
        source: its ``source``.
        subject: its ``subject``.
        id: its ``id``, a new UUID by default; an event with the same source and id as an
            earlier one is a duplicate and matches nothing again.
        extensions: further attributes (``orderid``…), as the CloudEvents spec names them.

    Returns:
        What became of it: how many waiting executions and schedules it matched, whether it
        was retained for listens not reached yet, and whether it was a duplicate.

    Raises:
        InvalidSpec: an attribute is missing or wrong. PayloadTooLarge: the event is over
        the async payload limit.
    """
    event: dict[str, Any] = {
        **dict(extensions or {}), "specversion": "1.0", "id": id or str(uuid.uuid4()),
        "source": source, "type": type,
    }
    if subject is not None:
        event["subject"] = subject
    if data is not None:
        event["datacontenttype"] = "application/json"
        event["data"] = data
    return Call("POST", "/events", _model(EventOut), content=orjson.dumps(event),
                headers={"Content-Type": CLOUDEVENTS_JSON})
