"""Routes of triggers, and the ``/http/...`` routes that HTTP triggers serve."""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import APIRouter, Request, Response, status

from ember.api.auth import authorize_name
from ember.api.params import FunctionName, TriggerName
from ember.api.schemas import TriggerIn, TriggerList, TriggerOut, TriggerPatch
from ember.errors import NotFound
from ember.model.trigger import Trigger
from ember.triggers.http import HttpTriggerSource, forward, handle

router = APIRouter(tags=["triggers"])


def _out(request: Request, t: Trigger) -> TriggerOut:
    source = t.source.model_dump(mode="json")
    if source.get("api_key"):
        source["api_key"] = "***"  # a secret: set it, never read it back
    return TriggerOut(
        name=t.name, target=t.target, function=t.function, qualifier=t.qualifier,
        workflow=t.workflow, state=t.state,
        source=source, description=t.description, created_at=t.created_at,
        updated_at=t.updated_at,
        status=request.app.state.services.supervisor.status(t.name).to_json(),
        node=request.app.state.services.supervisor.node(t),
    )


def _service(request: Request) -> Any:
    return request.app.state.services


async def _settled(request: Request, t: Trigger) -> TriggerOut:
    # The supervisor follows the change on the event loop: answer once it has, so that
    # the answer's status and the next request see the source running (or stopped).
    await _service(request).supervisor.wait_settled()
    return _out(request, t)


@router.post("/triggers", status_code=status.HTTP_201_CREATED, response_model=TriggerOut)
async def create_trigger(body: TriggerIn, request: Request) -> TriggerOut:
    """Bind an event source to a function at a qualifier (a version or an alias, so that a
    new release moves traffic without touching the trigger), or with ``"target": "events"``
    to the workflow event bus, where its events start and resume workflows, or with
    ``"target": "workflow"`` to a workflow (``"workflow": NAME``), each event starting one
    execution of it."""
    authorize_name(request, body.function)
    authorize_name(request, getattr(body, "workflow", None))
    spec = body.model_dump(mode="json", exclude={"name"})
    created = await asyncio.to_thread(_service(request).triggers.create, body.name, spec)
    return await _settled(request, created)


@router.get("/triggers", response_model=TriggerList)
async def list_triggers(request: Request, function: str | None = None) -> TriggerList:
    found = await asyncio.to_thread(_service(request).triggers.list, function=function)
    return TriggerList(triggers=[_out(request, t) for t in found])


@router.get("/triggers/{name}", response_model=TriggerOut)
async def get_trigger(name: TriggerName, request: Request) -> TriggerOut:
    """The trigger with its status: events, invocations, failures, last event and error,
    connected or not."""
    return _out(request, await asyncio.to_thread(_service(request).triggers.get, name))


@router.patch("/triggers/{name}", response_model=TriggerOut)
async def update_trigger(name: TriggerName, body: TriggerPatch, request: Request) -> TriggerOut:
    patch = body.model_dump(mode="json", exclude_unset=True)
    updated = await asyncio.to_thread(_service(request).triggers.update, name, patch)
    return await _settled(request, updated)


@router.delete("/triggers/{name}", response_model=TriggerOut)
async def delete_trigger(name: TriggerName, request: Request) -> TriggerOut:
    deleted = await asyncio.to_thread(_service(request).triggers.delete, name)
    return await _settled(request, deleted)


def _state_route(action: str, state: str, doc: str) -> None:
    async def change(name: TriggerName, request: Request) -> TriggerOut:
        changed = await asyncio.to_thread(_service(request).triggers.set_state, name, state)
        return await _settled(request, changed)

    change.__doc__ = doc
    router.add_api_route(f"/triggers/{{name}}/{action}", change, methods=["POST"],
                         response_model=TriggerOut, name=f"{action}_trigger")


_state_route("pause", "paused", "Stop taking events; the source keeps them until resumed.")
_state_route("resume", "enabled", "Take events again, starting with those kept meanwhile.")
_state_route("disable", "disabled", "Stop the source.")
_state_route("enable", "enabled", "Start the source.")

_METHODS = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]


async def http_trigger(path: str, request: Request) -> Response:
    """Requests that HTTP triggers serve: ``/http{trigger path}/...``."""
    return await serve_http_trigger(_service(request), path, request, await request.body())


async def serve_http_trigger(services: Any, path: str, request: Request,
                             body: bytes) -> Response:
    """Serve ``/http{path}`` whose ``body`` was read (also called by the API's fast path,
    before routing)."""
    route = services.supervisor.http_route(path or "/")
    if route is None or not isinstance(route[0], HttpTriggerSource):
        raise NotFound(f"no HTTP trigger serves {path or '/'}", {"path": path or "/"})
    source, rest = route
    return await handle(source, request, body, rest, services.router)


for _method in _METHODS:
    router.add_api_route(
        "/http{path:path}", http_trigger, methods=[_method], response_class=Response,
        tags=["http triggers"], operation_id=f"http_trigger_{_method.lower()}",
    )


async def direct_http(name: FunctionName, path: str, request: Request) -> Response:
    """A request straight to a web or custom function, no trigger in between (for
    debugging): the app sees it below ``/functions/{name}/http``; the ``X-Ember-Qualifier``
    header picks the version or alias (``latest`` by default)."""
    return await serve_direct_http(_service(request), name, path, request, await request.body())


async def serve_direct_http(services: Any, name: str, path: str, request: Request,
                            body: bytes) -> Response:
    """Serve ``/functions/{name}/http{path}`` whose ``body`` was read (also called by the
    API's fast path)."""
    return await forward(services.router, name, request.headers.get("x-ember-qualifier"),
                         request, body, path or "/", f"/functions/{name}/http")


def direct_http_target(path: str) -> tuple[str, str] | None:
    """``(name, path below the mount)`` when ``path`` is ``/functions/{name}/http...``."""
    if not path.startswith("/functions/"):
        return None
    name, _, rest = path[len("/functions/"):].partition("/")
    if not name or not (rest == "http" or rest.startswith("http/")):
        return None
    return name, rest[4:]


for _method in _METHODS:
    router.add_api_route(
        "/functions/{name}/http{path:path}", direct_http, methods=[_method],
        response_class=Response, tags=["http triggers"],
        operation_id=f"direct_http_{_method.lower()}",
    )
