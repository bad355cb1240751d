"""Invocation, logs, statistics and metrics routes."""

from __future__ import annotations

import asyncio
import base64
import dataclasses
from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Annotated, Any
from urllib.parse import parse_qs

from fastapi import APIRouter, Header, Query, Request, Response
from starlette.types import ASGIApp, Receive, Scope, Send

from ember.api.auth import principal_of
from ember.api.errors import error_response, unexpected_response
from ember.api.params import (
    FunctionName,
    IdempotencyKey,
    InvocationType,
    LogCursor,
    Qualifier,
)
from ember.api.payloads import check_json_depth
from ember.api.schemas import AcceptedOut, TaskOut
from ember.api.triggers import direct_http_target, serve_direct_http, serve_http_trigger
from ember.cluster.peers import is_node_principal, node_scope
from ember.cluster.placement import FORWARDED_HEADER, RAN_ON_HEADER
from ember.cluster.slots import SlotsTaken
from ember.errors import EmberError, InvalidRequest, InvalidSpec
from ember.observability.cluster import ClusterView, LogFilters
from ember.observability.logs import level_number
from ember.triggers.http import Answer

if TYPE_CHECKING:
    from ember.bootstrap import Services

router = APIRouter(tags=["invocation"])

_INVOKE_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "the function's answer, with X-Ember-* headers",
        "content": {"application/json": {}, "application/octet-stream": {}, "text/plain": {}},
    },
}


@router.post("/functions/{name}/invoke", response_class=Response, responses=_INVOKE_RESPONSES)
async def invoke(
    name: FunctionName,
    request: Request,
    qualifier: Qualifier = None,
    x_ember_invocation_type: InvocationType = "sync",
    x_ember_log_type: Annotated[str | None, Header(description="Tail: return the log tail")] = None,
    x_ember_idempotency_key: IdempotencyKey = None,
) -> Response:
    """Run the function with the request body as its event; the answer is its result, or
    for async invocations 202 with the request id (also the task id). A JSON event nested
    more than 512 levels deep is refused (400 ``InvalidPayload``).

    Served by ``InvokeFastPath``; this declaration documents it in the OpenAPI spec."""
    return await run_invoke(
        request.app.state.services, name, qualifier, await request.body(),
        request.headers.get("content-type"), x_ember_invocation_type, x_ember_log_type,
        x_ember_idempotency_key, request.headers,
    )


async def run_invoke(
    services: Services, name: str, qualifier: str | None, body: bytes,
    content_type: str | None, invocation_type: str | None, log_type: str | None,
    idempotency_key: str | None, headers: Mapping[str, str] | None = None,
    forwarded: bool = False,
) -> Response:
    """``forwarded``: another node placed this sync invocation here (it runs here)."""
    mode = (invocation_type or "sync").lower()
    if mode not in ("sync", "async"):
        raise InvalidSpec(
            f"invocation type {invocation_type!r} is not one of sync, async",
            {"field": "X-Ember-Invocation-Type"},
        )
    check_json_depth(body, content_type)
    if mode == "async":
        return await _accept(services, name, qualifier, body, content_type, idempotency_key)
    tail = (log_type or "").lower() == "tail"
    target = None
    placement = services.placement
    if placement is not None and not forwarded:
        target = await services.router.pick(name, qualifier)
        node = placement.choose(target.key)
        if node is not None:
            ran = await placement.forward(node, name, target.version, body, headers or {},
                                          target.config.timeout_s)
            if ran is not None:
                return Response(ran.body, status_code=ran.status, headers=ran.headers)
    try:
        result = await services.router.invoke(
            name, qualifier, body, content_type or "application/json", log_tail=tail,
            target=target,
        )
    except SlotsTaken as err:
        # max_instances are all up on other nodes: queue there, for theirs.
        if placement is None or target is None:
            raise
        node = placement.holder(target.key, err.holders)
        ran = None if node is None else await placement.forward(
            node, name, target.version, body, headers or {}, target.config.timeout_s)
        if ran is None:
            raise
        return Response(ran.body, status_code=ran.status, headers=ran.headers)
    answer = result.headers()
    answer[RAN_ON_HEADER] = services.nodes.id
    if tail and result.log_tail is not None:
        answer["X-Ember-Log-Tail"] = base64.b64encode(result.log_tail.encode()).decode()
    return Answer(result.body, result.content_type, answer)


async def _accept(
    services: Services, name: str, qualifier: str | None, body: bytes,
    content_type: str | None, idempotency_key: str | None,
) -> Response:
    task, created = await services.invoker.submit(
        name, qualifier, body, content_type or "application/json",
        idempotency_key=idempotency_key,
    )
    accepted = AcceptedOut(request_id=task.id, deduplicated=not created, task=TaskOut.of(task))
    return Response(
        accepted.model_dump_json(), status_code=202, media_type="application/json",
        headers={"X-Ember-Request-Id": task.id},
    )


class InvokeFastPath:
    """Serves ``POST /functions/{name}/invoke`` and the ``/http/...`` routes of HTTP
    triggers before FastAPI's routing and dependency resolution, which cost more than the
    whole warm invocation behind them. Everything else goes on to the app."""

    def __init__(self, app: ASGIApp, services: Services) -> None:
        self._app = app
        self._services = services

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            path: str = scope["path"]
            if path.startswith("/http") and (len(path) == 5 or path[5] == "/"):
                await self._http_trigger(path[5:], scope, receive, send)
                return
            direct = direct_http_target(path)
            # PostgreSQL cannot hold a NUL character, and no name or value of Ember's
            # does: refuse one before it reaches the store (the path and query below a
            # direct HTTP mount belong to the app).
            where = _nul_in(path, scope.get("query_string", b""), direct)
            if where is not None:
                err = InvalidRequest(f"a NUL character is not allowed in the {where}",
                                     {"field": where})
                await error_response(err)(scope, receive, send)
                return
            if (scope["method"] == "POST" and path.startswith("/functions/")
                    and path.endswith("/invoke")):
                name = path[len("/functions/") : -len("/invoke")]
                if name and "/" not in name:
                    await self._invoke(name, scope, receive, send)
                    return
            if direct is not None:
                request = Request(scope, receive)
                body = await read_body(receive)
                await respond(
                    lambda: serve_direct_http(self._services, *direct, request, body),
                    scope, receive, send,
                )
                return
        await self._app(scope, receive, send)

    async def _http_trigger(self, path: str, scope: Scope, receive: Receive, send: Send) -> None:
        request = Request(scope, receive)
        body = await read_body(receive)
        await respond(lambda: serve_http_trigger(self._services, path, request, body),
                      scope, receive, send)

    async def _invoke(self, name: str, scope: Scope, receive: Receive, send: Send) -> None:
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
        raw_query = scope.get("query_string", b"")
        query = parse_qs(raw_query.decode("latin-1")) if raw_query else {}
        body = await read_body(receive)
        await respond(
            lambda: run_invoke(
                self._services, name, query.get("qualifier", [None])[-1], body,
                headers.get("content-type"), headers.get("x-ember-invocation-type"),
                headers.get("x-ember-log-type"), headers.get("x-ember-idempotency-key"),
                headers, _forwarded(scope, headers),
            ),
            scope, receive, send)


async def read_body(receive: Receive) -> bytes:
    """The whole body of a request, as the ASGI server hands it in."""
    chunks = []
    while True:
        message = await receive()
        chunks.append(message.get("body", b""))
        if not message.get("more_body"):
            return b"".join(chunks)


async def respond(serve: Callable[[], Awaitable[Response]], scope: Scope, receive: Receive,
                  send: Send) -> None:
    """Send what ``serve`` answers, or the error it raises as the API renders errors."""
    try:
        response = await serve()
    except EmberError as err:
        response = error_response(err)
    except Exception as exc:
        response = unexpected_response(exc, scope["method"], scope["path"], scope["headers"])
    await response(scope, receive, send)


def _forwarded(scope: Scope, headers: Mapping[str, str]) -> bool:
    """Whether another node placed this invocation here: its forwarding header, sent
    with a node's credential (an API key cannot make a node run what it would place)."""
    if FORWARDED_HEADER.lower() not in headers:
        return False
    return is_node_principal(scope.get("state", {}).get("principal"))


def _nul_in(path: str, query: bytes, direct: tuple[str, str] | None) -> str | None:
    """``path`` or ``query`` when that part of a request holds a NUL character that Ember
    would read (below a direct HTTP mount, both belong to the app)."""
    if "\x00" in (direct[0] if direct else path):
        return "path"
    if direct is None and b"%00" in query:
        return "query"
    return None


def _view(services: Services) -> ClusterView:
    return ClusterView(services.nodes.id, services.logs, services.stats, services.peers)


@router.get("/functions/{name}/logs")
async def get_logs(
    name: FunctionName,
    request: Request,
    request_id: str | None = None,
    level: Annotated[str | None, Query(description="lowest level shown")] = None,
    since: Annotated[float | None, Query(description="unix time")] = None,
    until: Annotated[float | None, Query(description="unix time")] = None,
    grep: Annotated[str | None, Query(description="text the line contains")] = None,
    limit: Annotated[int, Query(ge=1, le=10_000)] = 100,
    cursor: LogCursor = None,
) -> dict[str, Any]:
    """Log lines of the function, oldest first, from every node of the cluster (each line
    names its ``node``; ``nodes`` lists those covered, ``unreachable`` those whose lines
    are missing); ``next_cursor`` polls for newer ones."""
    services = request.app.state.services
    await asyncio.to_thread(services.functions.get, name)
    if level:
        level_number(level)  # refused here, before any node is asked
    cursor = cursor or None  # an empty cursor is no cursor, as in every list
    filters = LogFilters(request_id, level, since, until, grep)
    view = _view(services)
    if node_scope(request.headers):
        local = await asyncio.to_thread(view.local_logs, name, filters, limit, cursor)
        return {**local, "nodes": [view.node], "unreachable": []}
    return await view.logs(name, filters, limit, cursor)


@router.get("/functions/{name}/stats")
async def get_stats(
    name: FunctionName,
    request: Request,
    window_s: Annotated[float, Query(gt=0, le=7 * 86400)] = 900,
) -> dict[str, Any]:
    """Invocations, errors, timeouts, throttles, cold starts and duration percentiles over
    the window, with one point per minute, on every node of the cluster (``nodes``,
    ``unreachable`` as for logs)."""
    services = request.app.state.services
    await asyncio.to_thread(services.functions.get, name)
    now = services.clock.time()
    if node_scope(request.headers):
        return await _view(services).stats(name, now=now, window_s=window_s, local_only=True)
    stats = await _view(services).stats(name, now=now, window_s=window_s)
    figures = await services.invoker.queue.figures(name, now=now)
    stats["queue"] = dataclasses.asdict(figures)
    return stats


@router.get("/stats", tags=["functions"])
async def get_overview(
    request: Request,
    window_s: Annotated[float, Query(gt=0, le=7 * 86400)] = 3600,
) -> dict[str, Any]:
    """Every function's invocations together (those the caller's key reaches), on every
    node: totals and one point per minute over the window, and each function's counts."""
    services = request.app.state.services
    principal = principal_of(request)
    now = services.clock.time()
    include = principal.covers if principal is not None else (lambda _: True)
    return await _view(services).overview(now=now, window_s=window_s, include=include,
                                          local_only=node_scope(request.headers))


@router.get("/metrics", response_class=Response, tags=["system"])
async def metrics(request: Request) -> Response:
    """Prometheus metrics."""
    from prometheus_client import CONTENT_TYPE_LATEST

    services = request.app.state.services
    functions = await asyncio.to_thread(services.functions.all_functions)
    names = [f.name for f in functions]
    await services.metrics.refresh_queue(services.invoker.queue, names, services.clock.time())
    return Response(services.metrics.render(), media_type=CONTENT_TYPE_LATEST)

