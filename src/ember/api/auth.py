"""Every API route needs a key (``Authorization: Bearer <key>``) but ``/healthz``, the
HTTP triggers' ``/http/...`` (which keep their own ``auth``) and the web console's pages
under ``/console`` (which log in with a key); the key's role decides what it may do
(``ember.auth.policy``), and every change it makes is audited.

A request without a bearer key may carry the console's session cookie instead
(``ember.auth.sessions``); a change made with it needs the session's CSRF token.

Another node of the cluster calls with the node credential and names itself in
``X-Ember-Node`` (``ember.cluster.peers``): it acts as an admin, keys and the audit aside."""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Awaitable, Callable

from fastapi import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ember.api.errors import error_response
from ember.auth.keys import KeyService, Principal
from ember.auth.policy import INVOKE, READ, check, check_named, need
from ember.auth.sessions import COOKIE, CSRF_HEADER, ConsoleSessions
from ember.cluster.peers import NODE_HEADER, NodeCredential
from ember.errors import EmberError, Forbidden

log = logging.getLogger(__name__)

Audit = Callable[[str, str, str, int], Awaitable[None]]
_OPEN = ("/healthz",)


_SAFE = frozenset({"GET", "HEAD"})
# What a node credential is not for: nodes never manage keys nor read the audit.
_NOT_FOR_NODES = re.compile(r"^/(keys|audit)(/|$)")


def open_path(path: str) -> bool:
    return (path in _OPEN or path == "/http" or path.startswith("/http/")
            or path == "/console" or path.startswith("/console/"))


class Authenticate:
    """Pure ASGI middleware, in front of the invoke fast path."""

    def __init__(self, app: ASGIApp, keys: KeyService, audit: Audit,
                 sessions: ConsoleSessions | None = None,
                 nodes: NodeCredential | None = None) -> None:
        self._app = app
        self._keys = keys
        self._audit = audit
        self._sessions = sessions
        self._nodes = nodes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or open_path(scope["path"]) or scope["method"] == "OPTIONS":
            await self._app(scope, receive, send)
            return
        method, path = scope["method"], scope["path"]
        audited = need(method, path).kind not in (READ, INVOKE)
        token = _bearer(scope)
        principal: Principal | None = None
        session = None if token is not None else session_cookie(scope)
        try:
            if token is not None and self._nodes is not None and self._nodes.claims(token):
                principal = self._nodes.principal(token, _header(scope, NODE_HEADER.lower()))
                _node_may(principal, method, path)
            elif session is not None and self._sessions is not None:
                principal = await self._sessions.principal_async(session)
                if method not in _SAFE:
                    self._sessions.check_csrf(session, _header(scope, CSRF_HEADER))
            elif self._keys.needs_lookup(token):
                principal = await asyncio.to_thread(self._keys.authenticate, token)
            else:
                principal = self._keys.authenticate(token)
            check(principal, method, path)
        except EmberError as err:
            if audited:
                await self._record(principal.name if principal else "(no valid key)", method,
                                   path, err.http_status)
            response = error_response(err)
            if err.http_status == 401:
                response.headers["WWW-Authenticate"] = 'Bearer realm="ember"'
            await response(scope, receive, send)
            return
        scope.setdefault("state", {})["principal"] = principal
        if not audited:
            await self._app(scope, receive, send)
            return
        status = 500

        async def watching(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self._app(scope, receive, watching)
        finally:
            await self._record(principal.name, method, path, status)

    async def _record(self, key: str, method: str, path: str, status: int) -> None:
        try:
            await self._audit(key, method, path, status)
        except Exception:
            log.exception("could not audit %s %s by %s", method, path, key)


def _node_may(principal: Principal, method: str, path: str) -> None:
    if _NOT_FOR_NODES.match(path):
        raise Forbidden(f"a node may not {method} {path}: keys and the audit are for API "
                        "keys", {"key": principal.name})


def _bearer(scope: Scope) -> str | None:
    for name, value in scope.get("headers", ()):
        if name == b"authorization":
            scheme, _, token = value.decode("latin-1").partition(" ")
            token = token.strip()
            return token if scheme.lower() == "bearer" and token else None
    return None


def _header(scope: Scope, name: str) -> str | None:
    wanted = name.encode()
    for key, value in scope.get("headers", ()):
        if key == wanted:
            return str(value.decode("latin-1"))
    return None


def session_cookie(scope: Scope) -> str | None:
    """The console's session id from the ``Cookie`` header, or None."""
    for name, value in scope.get("headers", ()):
        if name != b"cookie":
            continue
        text: str = value.decode("latin-1")
        for part in text.split(";"):
            key, sep, found = part.strip().partition("=")
            if sep and key == COOKIE and found:
                return found
    return None


def principal_of(request: Request) -> Principal | None:
    found = request.scope.get("state", {}).get("principal")
    return found if isinstance(found, Principal) else None


def authorize_name(request: Request, name: str | None) -> None:
    """For a route whose body names the function (or workflow): raise Forbidden unless the
    caller's key reaches it."""
    principal = principal_of(request)
    if principal is not None and name is not None:
        check_named(principal, name)

