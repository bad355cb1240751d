"""HTTP triggers: requests under ``/http{path}`` on the server's own port invoke the function
synchronously, and its answer becomes the HTTP response.

The handler gets a CloudEvent whose data is the request — method, path (below the
trigger's prefix), query, headers, body (text, or base64 with ``isBase64Encoded``) — and may
answer ``{"statusCode", "headers", "body", "isBase64Encoded"}`` or any other value (sent as
JSON with status 200). A web or custom function instead gets the request itself, mounted
at ``/http{path}`` (its ``root_path``), and its response streams back as the app produces it.
Delivery: exactly the request's own; nothing is queued or retried.

A trigger with target ``events`` publishes that CloudEvent on the workflow event bus
instead, and answers 202 once it is stored: ``{"id", "matched": {"executions",
"schedules"}, "retained", "duplicate"}`` (``retained``: nothing took it yet, it waits for a
listen within the retention window; ``duplicate``: an event with its id came before).
A trigger with target ``workflow`` starts an execution of its workflow with that CloudEvent
as the input, and answers 202 once it is stored: ``{"execution", "workflow", "created"}``
(follow it at ``GET /executions/{id}``).
"""

from __future__ import annotations

import asyncio
import base64
import hmac
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.types import Receive, Scope, Send

from ember.errors import EmberError, MethodNotAllowed, ServiceUnavailable, Unauthorized
from ember.ids import new_id
from ember.model.trigger import HttpSource, key_digest
from ember.pool.instance import HttpRequest
from ember.router import HttpResponse, InvocationResult, Router
from ember.runtime.protocol import HOP_BY_HOP
from ember.triggers.base import SourceContext


class HttpTriggerSource:
    """The HTTP route of one trigger. The API's ``/http/...`` route finds it through the
    supervisor and calls ``handle``."""

    def __init__(self, context: SourceContext) -> None:
        self.context = context
        self.paused = False

    async def start(self) -> None:
        self.context.status.connected = True

    async def pause(self) -> None:
        self.paused = True

    async def resume(self) -> None:
        self.paused = False

    async def stop(self) -> None:
        self.context.status.connected = False


def check_auth(source: HttpSource, request: Request) -> None:
    if source.auth != "api_key":
        return
    given = request.headers.get("x-api-key", "")
    authorization = request.headers.get("authorization", "")
    if not given and authorization.lower().startswith("bearer "):
        given = authorization[7:].strip()
    assert source.api_key is not None
    if not given or not hmac.compare_digest(key_digest(given).encode(),
                                            source.api_key.encode()):
        raise Unauthorized("this route needs an API key: send it as X-Api-Key or a Bearer token")


async def handle(
    route: HttpTriggerSource, request: Request, body: bytes, rest: str, router: Router
) -> Response:
    """Serve one request of an HTTP trigger whose ``body`` was read; ``rest`` is the path
    below its prefix.

    A web or custom function gets the request itself and answers it, streaming; a handler
    function gets the request as the data of a CloudEvent."""
    context = route.context
    source = context.trigger.source
    assert isinstance(source, HttpSource)
    if request.method not in source.methods:
        refused = MethodNotAllowed(
            f"method {request.method} is not allowed here: {', '.join(source.methods)} "
            "(the trigger's 'methods')",
            {"allowed": source.methods},
        )
        refused.headers["Allow"] = ", ".join(source.methods)
        raise refused
    check_auth(source, request)
    if route.paused:
        raise ServiceUnavailable(f"trigger {context.trigger.name!r} is paused")
    trigger = context.trigger
    if context.to_events:
        return await _publish(context, request, body, rest)
    if context.to_workflow:
        return await _start(context, request, body, rest)
    assert trigger.function is not None  # a trigger with target function has one
    target = await router.resolve(trigger.function, trigger.qualifier)
    if target.primary.config.kind != "event":
        return await _forward(context, source, request, body, rest, router)
    context.received()
    result: InvocationResult = await context.invoke(_request_event(context, request, body, rest))
    return to_response(result)


async def _publish(context: SourceContext, request: Request, body: bytes,
                   rest: str) -> Response:
    """The request as a CloudEvent on the workflow event bus: 202 with what it reached."""
    context.received()
    event = _request_event(context, request, body, rest)
    try:
        published = await context.publish(event)
    except EmberError as err:
        context.failed(err)
        raise
    return JSONResponse({
        "id": published.id,
        "matched": {"executions": published.executions, "schedules": published.schedules},
        "retained": published.retained, "duplicate": published.duplicate,
    }, status_code=202)


async def _start(context: SourceContext, request: Request, body: bytes,
                 rest: str) -> Response:
    """The request as a CloudEvent that starts the trigger's workflow: 202 with the
    execution."""
    context.received()
    event = _request_event(context, request, body, rest)
    try:
        execution, created = await context.start_workflow(event)
    except EmberError as err:
        context.failed(err)
        raise
    return JSONResponse({"execution": execution.id, "workflow": context.trigger.workflow,
                         "created": created}, status_code=202)


def _request_event(context: SourceContext, request: Request, body: bytes,
                   rest: str) -> dict[str, Any]:
    """The CloudEvent a handler gets for ``request`` and its ``body``: its data is the
    request. Read from the ASGI scope (every request of a handler's trigger comes this
    way, and Starlette's parsed views of it cost more than the reading)."""
    scope = request.scope
    method: str = scope["method"]
    data: dict[str, Any] = {
        "method": method,
        "path": rest,
        # What request.url.path gives, without parsing the whole URL on every request.
        "rawPath": scope["path"].replace("?", "%3F").replace("#", "%23").replace("\\", "%5C"),
        "query": dict(request.query_params) if scope.get("query_string") else {},
        "headers": {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]
                    if k not in HOP_BY_HOP},
        "isBase64Encoded": False,
        "body": None,
    }
    if body:
        try:
            data["body"] = body.decode("utf-8")
        except UnicodeDecodeError:
            data["body"] = base64.b64encode(body).decode()
            data["isBase64Encoded"] = True
    return context.event(type="http.request", subject=rest, data=data,
                         extensions={"embermethod": method})


async def _forward(
    context: SourceContext, source: HttpSource, request: Request, body: bytes, rest: str,
    router: Router,
) -> Response:
    """The request as it came, to a web or custom function mounted at the trigger's path."""
    root_path = "/http" + ("" if source.path == "/" else source.path)
    context.received()
    context.status.invocations += 1
    function = context.trigger.function
    assert function is not None  # handle() publishes for a trigger with no function
    try:
        return await forward(router, function, context.trigger.qualifier,
                             request, body, rest, root_path, trigger=context.trigger.name)
    except EmberError as err:
        context.failed(err)
        raise


async def forward(
    router: Router, function: str, qualifier: str | None, request: Request, body: bytes,
    rest: str, root_path: str, trigger: str | None = None,
) -> Response:
    """Send ``request`` (its ``body`` already read) to a web or custom function that sees
    it at ``rest`` below ``root_path``, with ``X-Ember-Request-Id`` (and
    ``X-Ember-Trigger``) added; its response streams back."""
    request_id = new_id()
    scope = request.scope  # read as it is: Starlette's views of it cost more than this
    headers = [(k, v) for k, v in scope["headers"]
               if k not in HOP_BY_HOP and not k.startswith(b"x-ember-")]
    headers.append((b"x-ember-request-id", request_id.encode()))
    if trigger is not None:
        headers.append((b"x-ember-trigger", trigger.encode()))
    client = scope.get("client")
    forwarded = HttpRequest(
        method=scope["method"],
        path=rest,
        root_path=root_path,
        query=scope.get("query_string", b""),
        headers=headers,
        body=body,
        client=(str(client[0]), int(client[1])) if client else None,
    )
    return StreamedResponse(
        await router.invoke_http(function, qualifier, forwarded, request_id=request_id)
    )


class StreamedResponse(Response):
    """Sends a web function's response as it streams in; the exchange (and the instance's
    slot) is closed however the sending ends, a client gone away included."""

    def __init__(self, answer: HttpResponse) -> None:
        # Not Response.__init__: the headers it makes (an empty body's) are replaced here.
        self.status_code = answer.exchange.status
        self.background = None
        self.body = b""
        self.answer = answer
        ours = [(k.lower().encode("latin-1"), v.encode("latin-1"))
                for k, v in answer.headers().items()]
        self.raw_headers = [*answer.exchange.headers, *ours]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        exchange = self.answer.exchange
        try:
            await send({"type": "http.response.start", "status": self.status_code,
                        "headers": self.raw_headers})
            if not exchange.more:
                await send({"type": "http.response.body", "body": exchange.first})
                return
            # Stream until the body ends or the client goes away, whichever comes first: a
            # client that left stops the app (an endless event stream included).
            pumping = asyncio.ensure_future(self._pump(send))
            watching = asyncio.ensure_future(_disconnected(receive))
            try:
                done, _ = await asyncio.wait({pumping, watching},
                                             return_when=asyncio.FIRST_COMPLETED)
                if pumping in done:
                    pumping.result()
            finally:
                for task in (pumping, watching):
                    task.cancel()
                await asyncio.gather(pumping, watching, return_exceptions=True)
        finally:
            exchange.close()

    async def _pump(self, send: Send) -> None:
        async for chunk in self.answer.exchange.body():
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
        await send({"type": "http.response.body", "body": b""})


async def _disconnected(receive: Receive) -> None:
    """Return once the client has gone away (the request body was read already)."""
    while (await receive())["type"] != "http.disconnect":
        pass


def to_response(result: InvocationResult) -> Response:
    """The function's answer as an HTTP response: a ``statusCode`` object is unpacked."""
    headers = {"X-Ember-Request-Id": result.request_id, "X-Ember-Version": result.version}
    # Only an object with a statusCode is unpacked: a body without the word is no such
    # object, and is not parsed (every answer comes this way).
    if "json" in result.content_type and b'"statusCode"' in result.body:
        try:
            value = orjson.loads(result.body) if result.body else None
        except orjson.JSONDecodeError:
            value = None
        if isinstance(value, dict) and "statusCode" in value:
            status = int(value["statusCode"])
            extra = {str(k): str(v) for k, v in (value.get("headers") or {}).items()}
            raw = value.get("body")
            if isinstance(raw, str):
                content = base64.b64decode(raw) if value.get("isBase64Encoded") else raw.encode()
                media = extra.pop("content-type", extra.pop("Content-Type", "text/plain"))
            elif raw is None:
                content, media = b"", "text/plain"
            else:
                content, media = orjson.dumps(raw), "application/json"
            return Response(content, status_code=status, media_type=media,
                            headers={**headers, **extra})
    return Answer(result.body, result.content_type, headers)


class Answer(Response):
    """A function's answer: the Response Starlette would make of ``body``, ``media_type``
    and ``headers`` (``X-Ember-*``, plain ASCII names and values), its raw headers made in
    one pass — this runs on every warm invocation, through the API or an HTTP trigger."""

    def __init__(self, body: bytes, media_type: str, headers: dict[str, str]) -> None:
        self.status_code = 200
        self.media_type = media_type
        self.background = None
        self.body = body
        if media_type.startswith("text/") and "charset=" not in media_type.lower():
            media_type += "; charset=" + self.charset
        self.raw_headers = [(name.lower().encode("latin-1"), value.encode("latin-1"))
                            for name, value in headers.items()]
        self.raw_headers += [(b"content-length", str(len(body)).encode("latin-1")),
                             (b"content-type", media_type.encode("latin-1"))]
