"""Routes of workflows, their executions, and the event bus (``POST /events``)."""

from __future__ import annotations

import asyncio
import base64
from typing import TYPE_CHECKING, Annotated, Any
from urllib.parse import unquote

import orjson
from fastapi import APIRouter, Body, Header, Path, Query, Request, Response, status

from ember.api.params import Cursor
from ember.api.schemas import (
    NAME_PATTERN,
    EventMatches,
    EventOut,
    ExecutionIn,
    ExecutionList,
    ExecutionOut,
    WorkflowDeployOut,
    WorkflowList,
    WorkflowOut,
)
from ember.control.workflows import MAX_DOCUMENT_BYTES, WorkflowService
from ember.errors import InvalidRequest
from ember.model.workflow import EXECUTION_STATUSES, Execution

if TYPE_CHECKING:
    from ember.bootstrap import Limits

router = APIRouter(tags=["workflows"])

MAX_WAIT_S = 900.0
"""The longest a request may wait for an execution to end (``?wait_s=``)."""

# The media types of YAML documents; anything else that names JSON is read as JSON.
_YAML_TYPES = frozenset({"application/yaml", "application/x-yaml", "text/yaml", "text/x-yaml"})
_CLOUDEVENTS = "application/cloudevents+json"

WorkflowName = Annotated[str, Path(
    description="the workflow's name", json_schema_extra={"pattern": NAME_PATTERN},
)]
WaitS = Annotated[float, Query(
    ge=0, le=MAX_WAIT_S, description="wait up to this long for the execution to end",
)]
Statuses = Annotated[list[str] | None, Query(
    description="only executions with one of these statuses (repeat it)",
    json_schema_extra={"items": {"enum": list(EXECUTION_STATUSES)}},
)]
Limit = Annotated[int, Query(ge=1, le=1000)]


def body_limit(path: str, limits: Limits) -> int | None:
    """The largest body a workflow or event route takes, or None for other paths: a
    document on ``/workflows/{name}``, an input on ``.../executions`` (the sync payload
    limit) and an event on ``/events`` (the async payload limit)."""
    if path == "/events":
        return limits.max_async_payload_bytes
    if path.startswith("/workflows/"):
        rest = path[len("/workflows/"):]
        if "/" not in rest:
            return MAX_DOCUMENT_BYTES
        if rest.endswith("/executions"):
            return limits.max_sync_payload_bytes
    return None


def _service(request: Request) -> WorkflowService:
    service: WorkflowService = request.app.state.services.workflows
    return service


def _view(service: WorkflowService, execution: Execution, history: bool) -> ExecutionOut:
    steps = service.steps(execution) if history else None
    return ExecutionOut.of(execution, service.progress(execution), steps)


async def _out(service: WorkflowService, execution: Execution, *, history: bool = True,
               ) -> ExecutionOut:
    # A running execution's state is the engine's, changed on the event loop: read it
    # there. A finished one's is the row's own, and reading a large one (a for over many
    # items) takes a while: in a thread.
    if execution.active:
        return _view(service, execution, history)
    return await asyncio.to_thread(_view, service, execution, history)


# workflows -----------------------------------------------------------------------------------


_DOCUMENT_BODY: dict[str, Any] = {
    "required": True,
    "content": {
        "application/json": {"schema": {"type": "object"}},
        "application/yaml": {"schema": {"type": "string"}},
    },
    "description": "a Serverless Workflow DSL 1.0 document, as JSON or YAML",
}


@router.put("/workflows/{name}", response_model=WorkflowDeployOut,
            status_code=status.HTTP_201_CREATED, openapi_extra={"requestBody": _DOCUMENT_BODY},
            responses={200: {"model": WorkflowDeployOut,
                             "description": "the workflow existed already"}})
async def deploy_workflow(name: WorkflowName, request: Request, response: Response,
                          ) -> WorkflowDeployOut:
    """Save the document as the workflow's next revision: 201 when the workflow is new,
    else 200 with ``changed`` false when the latest revision had the same document. A
    document Ember cannot run is refused (400 ``InvalidSpec``, each problem named by its
    path in ``details.errors``)."""
    body = await request.body()
    media = (request.headers.get("content-type") or "").split(";", 1)[0].strip().lower()
    content_type = "application/yaml" if media in _YAML_TYPES else media or None
    info, changed = await asyncio.to_thread(_service(request).deploy, name, body, content_type)
    if not (changed and info.latest.revision == 1):
        response.status_code = status.HTTP_200_OK
    return WorkflowDeployOut.of(info, changed=changed)


@router.get("/workflows", response_model=WorkflowList, response_model_exclude_unset=True)
async def list_workflows(request: Request, prefix: str = "", limit: Limit = 100,
                         cursor: Cursor = None) -> WorkflowList:
    """Workflows by name, each with its latest revision (without its document)."""
    page = await asyncio.to_thread(_service(request).list_workflows, prefix=prefix, limit=limit,
                                   cursor=cursor or None)
    return WorkflowList(workflows=[WorkflowOut.of(w, document=False) for w in page.items],
                        next_cursor=page.next_cursor)


@router.get("/workflows/{name}", response_model=WorkflowOut)
async def get_workflow(name: WorkflowName, request: Request) -> WorkflowOut:
    """The workflow with its latest revision's document."""
    return WorkflowOut.of(await asyncio.to_thread(_service(request).get, name))


@router.delete("/workflows/{name}", status_code=status.HTTP_204_NO_CONTENT,
               response_class=Response)
async def delete_workflow(name: WorkflowName, request: Request, force: bool = False) -> Response:
    """Delete the workflow and its revisions. Refused (409 ``Conflict``) while executions of
    it run, unless ``force``: then they are cancelled first."""
    await _service(request).delete(name, force=force)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


# executions ----------------------------------------------------------------------------------


@router.post("/workflows/{name}/executions", response_model=ExecutionOut,
             response_model_exclude_unset=True, status_code=status.HTTP_201_CREATED,
             responses={200: {"model": ExecutionOut,
                              "description": "the idempotency key named an execution"}})
async def run_workflow(
    name: WorkflowName, request: Request, response: Response,
    body: Annotated[ExecutionIn | None, Body()] = None,
    wait_s: WaitS = 0,
    x_ember_idempotency_key: Annotated[str | None, Header(
        description="the same key for this workflow returns the execution it started",
        json_schema_extra={"minLength": 1, "maxLength": 256},
    )] = None,
) -> ExecutionOut:
    """Start an execution of the workflow's latest revision with ``{"input": …}`` (no body:
    input null); 201, or 200 when the idempotency key named an execution already. With
    ``wait_s`` the answer comes when it ends or the wait is over."""
    service = _service(request)
    execution, created = await service.run(
        name, body.input if body is not None else None,
        idempotency_key=x_ember_idempotency_key, wait_s=wait_s or None,
    )
    if not created:
        response.status_code = status.HTTP_200_OK
    return await _out(service, execution)


@router.get("/executions/{execution_id}", response_model=ExecutionOut,
            response_model_exclude_unset=True)
async def get_execution(execution_id: str, request: Request, wait_s: WaitS = 0,
                        history: bool = True) -> ExecutionOut:
    """The execution: status, input, output or error, the history of its task instances
    (unless ``history=false``) and the progress of its ``for`` tasks. With ``wait_s`` the
    answer comes when it ends or the wait is over."""
    service = _service(request)
    execution = await service.get_execution(execution_id, wait_s=wait_s or None)
    return await _out(service, execution, history=history)


@router.post("/executions/{execution_id}/cancel", response_model=ExecutionOut,
             response_model_exclude_unset=True)
async def cancel_execution(execution_id: str, request: Request) -> ExecutionOut:
    """Cancel a running or waiting execution: its running function steps are stopped and
    its timers and listens dropped. A finished one is returned as it is."""
    service = _service(request)
    return await _out(service, await service.cancel(execution_id))


async def _list(request: Request, workflow: str | None, statuses: list[str] | None,
                limit: int, cursor: str | None) -> ExecutionList:
    service = _service(request)
    page = await asyncio.to_thread(
        service.list_executions, workflow=workflow, status=statuses,
        limit=limit, cursor=cursor or None,
    )
    return ExecutionList(
        executions=[await _out(service, e, history=False) for e in page.items],
        next_cursor=page.next_cursor,
    )


@router.get("/workflows/{name}/executions", response_model=ExecutionList,
            response_model_exclude_unset=True)
async def list_workflow_executions(name: WorkflowName, request: Request, status: Statuses = None,
                                   limit: Limit = 100, cursor: Cursor = None) -> ExecutionList:
    """The workflow's executions, newest first, without their history."""
    return await _list(request, name, status, limit, cursor)


@router.get("/executions", response_model=ExecutionList, response_model_exclude_unset=True)
async def list_executions(
    request: Request, status: Statuses = None, limit: Limit = 100, cursor: Cursor = None,
    workflow: Annotated[str | None, Query(
        description="only this workflow's", json_schema_extra={"pattern": NAME_PATTERN},
    )] = None,
) -> ExecutionList:
    """Executions of every workflow (or of one), newest first, without their history."""
    return await _list(request, workflow, status, limit, cursor)


# events --------------------------------------------------------------------------------------


_OPTIONAL_STRING = {"anyOf": [{"type": "string"}, {"type": "null"}]}
_CLOUD_EVENT_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["type", "source"],
    "properties": {
        "specversion": {"enum": ["1.0"]},
        "type": {"type": "string", "minLength": 1},
        "source": {"type": "string", "minLength": 1},
        **{name: _OPTIONAL_STRING
           for name in ("id", "subject", "datacontenttype", "dataschema", "time")},
        "data": {},
    },
}
_EVENT_BODY: dict[str, Any] = {
    "required": True,
    "content": {
        _CLOUDEVENTS: {"schema": _CLOUD_EVENT_SCHEMA},
        # Plain JSON is a structured event when it says which CloudEvents version it is.
        "application/json": {"schema": {**_CLOUD_EVENT_SCHEMA,
                                        "required": ["specversion", "type", "source"]}},
    },
    "description": "a CloudEvent in structured mode, or its data in binary mode with the "
                   "attributes as ce-* headers",
}


@router.post("/events", response_model=EventOut, status_code=status.HTTP_202_ACCEPTED,
             tags=["events"], openapi_extra={"requestBody": _EVENT_BODY})
async def publish_event(request: Request) -> EventOut:
    """Publish a CloudEvent to the workflows' event bus: it is offered to the executions
    waiting on a ``listen`` and to the schedules (``schedule.on``) it matches, and kept for
    a while for listens not reached yet. Structured mode (``application/cloudevents+json``,
    or a JSON body with ``specversion``) or binary mode (``ce-id``, ``ce-source``,
    ``ce-type``, ``ce-specversion`` headers, the body as ``data``)."""
    event = cloud_event(request.headers, await request.body())
    result = await _service(request).publish(event)
    return EventOut(id=result.id, retained=result.retained, duplicate=result.duplicate,
                    matched=EventMatches(executions=result.executions,
                                         schedules=result.schedules))


def cloud_event(headers: Any, body: bytes) -> dict[str, Any]:
    """The CloudEvent a request carries, as a mapping of its attributes (and ``data``).

    Raises:
        InvalidRequest: the body is not a JSON object in structured mode, or not UTF-8 text
            in binary mode with a text content type.
    """
    content_type = headers.get("content-type")
    media = (content_type or "").split(";", 1)[0].strip().lower()
    if "ce-specversion" in headers:
        return _binary(headers, body, content_type, media)
    if media == _CLOUDEVENTS or media == "application/json" or media.endswith("+json") or (
            not media and body.lstrip()[:1] == b"{"):
        try:
            event = orjson.loads(body)
        except orjson.JSONDecodeError as exc:
            raise InvalidRequest(f"the event is not JSON: {exc}", {"field": "body"}) from exc
        if isinstance(event, dict) and (media == _CLOUDEVENTS or "specversion" in event):
            return event
    raise InvalidRequest(
        "not a CloudEvent: send it in structured mode (Content-Type: "
        f"{_CLOUDEVENTS}, or a JSON object with specversion) or in binary mode (ce-id, "
        "ce-source, ce-type and ce-specversion headers)", {"field": "body"},
    )


def _binary(headers: Any, body: bytes, content_type: str | None, media: str,
            ) -> dict[str, Any]:
    # Header values are percent-encoded (the CloudEvents HTTP binding, 3.1.3.2).
    event: dict[str, Any] = {
        name[3:].lower(): unquote(value) for name, value in headers.items()
        if name.lower().startswith("ce-") and len(name) > 3
    }
    if content_type:
        event["datacontenttype"] = content_type
    if not body:
        return event
    if media == "application/json" or media.endswith("+json") or not media:
        try:
            event["data"] = orjson.loads(body)
            return event
        except orjson.JSONDecodeError as exc:
            if media:
                raise InvalidRequest(f"the event's data is not JSON: {exc}",
                                     {"field": "body"}) from exc
    try:
        event["data"] = body.decode()
    except UnicodeDecodeError:
        # Bytes that are not text travel as the spec's data_base64.
        event["data_base64"] = base64.b64encode(body).decode("ascii")
    return event

