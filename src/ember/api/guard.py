"""Refuses what a web page in a browser could make a browser send to Ember.

A server on 127.0.0.1 is still reachable from every page the machine's browser opens:

- **DNS rebinding**: a page on ``attacker.example`` whose name is made to resolve to
  127.0.0.1 talks to Ember as a same-origin site. Its requests carry ``Host:
  attacker.example``; only the host names in ``allowed_hosts`` (loopback names by default,
  ``*`` for any) are served.
- **Cross-site requests** (CSRF): a page may send a POST to any address without asking
  (a form, ``fetch(..., {mode: "no-cors"})``) — the browser then names the page in
  ``Origin`` (and says ``Sec-Fetch-Site: cross-site``). A request that changes something
  and comes from a page whose origin is not an allowed host is refused with 403. Programs
  (the CLI, the SDK, curl) send no ``Origin`` and are not affected.
- **CORS** is off unless ``cors_origins`` names origins (``ember.bootstrap`` adds
  Starlette's middleware then), so pages cannot read Ember's answers either.
"""

from __future__ import annotations

from collections.abc import Iterable
from urllib.parse import urlsplit

from starlette.types import ASGIApp, Receive, Scope, Send

from ember.api.errors import error_response
from ember.errors import Forbidden, InvalidRequest

LOOPBACK_HOSTS = ("localhost", "127.0.0.1", "::1")
_CHANGES = frozenset({"POST", "PUT", "PATCH", "DELETE"})


def host_name(value: str) -> str:
    """The host name of a ``Host`` header value (without its port; IPv6 without brackets)."""
    value = value.strip().lower()
    if value.startswith("["):
        return value[1:value.find("]")] if "]" in value else value
    return value.rsplit(":", 1)[0] if value.count(":") == 1 else value


class RequestGuard:
    """Pure ASGI middleware in front of everything (the invoke fast path included)."""

    def __init__(self, app: ASGIApp, allowed_hosts: Iterable[str]) -> None:
        self._app = app
        hosts = {host.strip().lower().strip("[]") for host in allowed_hosts}
        self._any = "*" in hosts
        self._hosts = frozenset(hosts - {"*"})

    def allowed(self, host: str) -> bool:
        return self._any or host in self._hosts

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self._app(scope, receive, send)
            return
        headers = dict(scope.get("headers", ()))
        host = host_name(headers.get(b"host", b"").decode("latin-1"))
        if not self.allowed(host):
            err: InvalidRequest | Forbidden = InvalidRequest(
                f"this server does not serve the host name {host or '(none)'!r}: add it to "
                "the allowed hosts (EMBER_ALLOWED_HOSTS) if it is meant to reach Ember",
                {"field": "Host", "value": host},
            )
            await error_response(err)(scope, receive, send)
            return
        if scope["method"] in _CHANGES and not self._same_site(headers):
            err = Forbidden(
                "a cross-site request from a web page was refused: Ember's API takes "
                "requests that change things from programs (the CLI, the SDK, curl) and "
                "from pages served by an allowed host",
                {"origin": headers.get(b"origin", b"").decode("latin-1")},
            )
            await error_response(err)(scope, receive, send)
            return
        await self._app(scope, receive, send)

    def _same_site(self, headers: dict[bytes, bytes]) -> bool:
        origin = headers.get(b"origin")
        if origin is not None:
            text = origin.decode("latin-1").strip()
            if text == "null":  # a sandboxed frame, a file: page, a redirect across sites
                return False
            return self.allowed((urlsplit(text).hostname or "").lower())
        # No Origin: a program, or an old browser; a browser that says where the request
        # comes from is believed.
        site = headers.get(b"sec-fetch-site", b"none")
        return site in (b"none", b"same-origin")
