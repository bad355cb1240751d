"""The warm paths of ``POST /functions/{name}/invoke`` and of HTTP triggers
(``/http/...``), in front of everything.

A program invoking a function (the SDK, the CLI, curl, a load balancer) sends the same
few headers every time: a host Ember serves, a bearer API key already checked once, a
declared body within the limit. ``HotInvoke`` checks exactly that in one pass over the
headers and runs the invocation: the same checks the request guard, the key check, the
body limit and ``InvokeFastPath`` make one after another (each reading the headers again,
each wrapping ``receive`` and ``send``). A request to an HTTP trigger is checked the same
way, less the key: the trigger's own ``auth`` decides who may call it.

It never refuses anything itself: a request it is not sure of — another method or path,
no key or one not seen yet, a key that may not invoke the function, a browser's
``Origin`` or cookie, another node's credential, a chunked or oversized body, a host not
served, a NUL character — goes on through the full stack, which answers it as it always
has.
"""

from __future__ import annotations

from typing import TYPE_CHECKING
from urllib.parse import parse_qs

from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from ember.api.guard import RequestGuard, host_name
from ember.api.invoke import read_body, respond, run_invoke
from ember.api.triggers import serve_http_trigger
from ember.auth.keys import KeyService, Principal
from ember.auth.policy import check
from ember.cluster.peers import NodeCredential
from ember.errors import EmberError

if TYPE_CHECKING:
    from ember.bootstrap import Services

_PREFIX = "/functions/"
_SUFFIX = "/invoke"
# Headers whose presence sends a request through the full stack: a browser's (the guard
# judges them), the console's session, a body of unknown length (the limit counts it).
_FULL_STACK = frozenset({b"origin", b"sec-fetch-site", b"cookie", b"transfer-encoding"})
# Host header values already judged, and whether they are served (bounded: a client that
# sends a new one each time only costs the parse).
_MAX_HOSTS = 64


class HotInvoke:
    """Pure ASGI middleware, outermost: see the module's docstring.

    ``guard``: the full stack, whose request guard also says which host names are
    served; ``max_body``: the body limit of the invoke route."""

    def __init__(self, guard: RequestGuard, services: Services, keys: KeyService,
                 nodes: NodeCredential | None, max_body: int) -> None:
        self._app = guard
        self._services = services
        self._guard = guard
        self._keys = keys
        self._nodes = nodes
        self._max_body = max_body
        self._hosts: dict[bytes, bool] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self._app(scope, receive, send)
            return
        path: str = scope["path"]
        name = path[len(_PREFIX):-len(_SUFFIX)]
        trigger = path.startswith("/http/")
        if not trigger and (scope["method"] != "POST" or not path.startswith(_PREFIX)
                            or not path.endswith(_SUFFIX) or not name or "/" in name):
            await self._app(scope, receive, send)
            return
        host = authorization = length = None
        extra: dict[str, str] = {}
        for key, value in scope["headers"]:
            if key == b"host":
                host = value
            elif key == b"authorization":
                authorization = value
            elif key == b"content-length":
                length = value
            elif key in _FULL_STACK:
                await self._app(scope, receive, send)
                return
            elif key == b"content-type" or key.startswith(b"x-ember-"):
                extra[key.decode("latin-1")] = value.decode("latin-1")
        query: bytes = scope.get("query_string", b"")
        # Without Content-Length (nor Transfer-Encoding, which goes to the full stack)
        # a request has no body.
        if (host is None or not self._serves(host) or "\x00" in path or b"%00" in query
                or (length is not None
                    and (not length.isdigit() or int(length) > self._max_body))):
            await self._app(scope, receive, send)
            return
        if trigger:
            # An HTTP trigger's own ``auth`` decides who may call it, not API keys.
            request, body = Request(scope, receive), await read_body(receive)
            await respond(
                lambda: serve_http_trigger(self._services, path[len("/http"):], request, body),
                scope, receive, send)
            return
        principal = self._principal(authorization, path)
        if principal is None:
            await self._app(scope, receive, send)
            return
        scope.setdefault("state", {})["principal"] = principal
        qualifier = (parse_qs(query.decode("latin-1")).get("qualifier", [None])[-1]
                     if query else None)
        body = await read_body(receive)
        services = self._services

        async def invoke() -> Response:
            headers = extra
            if services.placement is not None:
                # A cluster may forward the request: with every header, as the full stack.
                headers = {k.decode("latin-1"): v.decode("latin-1")
                           for k, v in scope["headers"]}
            return await run_invoke(
                services, name, qualifier, body, headers.get("content-type"),
                headers.get("x-ember-invocation-type"), headers.get("x-ember-log-type"),
                headers.get("x-ember-idempotency-key"), headers,
            )

        await respond(invoke, scope, receive, send)

    def _principal(self, authorization: bytes | None, path: str) -> Principal | None:
        """The caller, when its bearer key is an API key already seen that may invoke at
        ``path``; None sends the request through the full stack (which answers a key it
        refuses, or looks one up in a thread)."""
        if authorization is None or not authorization.startswith(b"Bearer "):
            return None
        token = authorization[7:].decode("latin-1").strip()
        if not token or (self._nodes is not None and self._nodes.claims(token)):
            return None
        if self._keys.needs_lookup(token):
            return None
        try:
            principal = self._keys.authenticate(token)
            check(principal, "POST", path)
        except EmberError:
            return None
        return principal

    def _serves(self, host: bytes) -> bool:
        served = self._hosts.get(host)
        if served is None:
            served = self._guard.allowed(host_name(host.decode("latin-1")))
            if len(self._hosts) < _MAX_HOSTS:
                self._hosts[host] = served
        return served
