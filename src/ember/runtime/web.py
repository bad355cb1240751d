"""Web functions and custom runtimes, inside an instance: what their servers share.

HTTP requests arrive as ``http`` frames (``ember.runtime.protocol``) and are served, several
at once, by one of three servers (a ``Server``):

* ``asgi.AsgiServer``: an ASGI app (FastAPI, Starlette, ...) on an event loop of its own
  thread, with the lifespan protocol run at start and stop;
* ``wsgi.WsgiServer``: a WSGI app (Flask, Django, ...) on a pool of ``concurrency`` threads;
* ``custom.CustomServer``: the user's own HTTP server, any language, started by a command
  with ``$PORT`` set, probed until ready, health-checked while it runs, and reached
  through a local HTTP connection per worker thread.

A response goes back through a responder (``ember.runtime.responders``) as the app
produces it, so streamed responses stream. An ``invoke`` (a direct or async invocation, an
event of a non-HTTP trigger) becomes ``POST /invoke`` with the payload as its body
(``invoke_request``); a status below 300 is the result, any other an error.

Standard library only, like the rest of the runtime.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from typing import Protocol
from urllib.parse import unquote

from ember.runtime.protocol import Message
from ember.runtime.responders import Headers, ProbeResponder, Responder

_probes = itertools.count(1)


def invoke_request(message: Message) -> Message:
    """The ``POST /invoke`` request an ``invoke`` message becomes."""
    headers: Headers = [
        (b"content-type", str(message.get("content_type") or "application/octet-stream")
         .encode("latin-1")),
        (b"x-ember-request-id", str(message["id"]).encode()),
        (b"x-ember-qualifier", str(message.get("qualifier") or "latest").encode()),
        (b"x-ember-attempt", str(message.get("attempt", 1)).encode()),
    ]
    if message.get("trigger"):
        headers.append((b"x-ember-trigger", str(message["trigger"]).encode()))
    return {"id": message["id"], "method": "POST", "path": "/invoke", "root_path": "",
            "query": b"", "headers": headers, "body": message.get("payload") or b"",
            "client": None}


class Server(Protocol):
    def start(self, timeout_s: float) -> None: ...

    def submit(self, request: Message, responder: Responder) -> None: ...

    def cancel(self, request_id: str) -> None: ...

    def stop(self, grace_s: float) -> None: ...


def request_headers(request: Message) -> Headers:
    return [(bytes(k).lower(), bytes(v)) for k, v in request.get("headers") or ()]


def server_address(headers: Headers) -> tuple[str, int]:
    for name, value in headers:
        if name == b"host":
            host, _, port = value.decode("latin-1").rpartition(":")
            if host and port.isdigit():
                return host, int(port)
            return value.decode("latin-1"), 80
    return "localhost", 80


def probe(path: str, timeout_s: float, submit: Callable[[Message, Responder], None],
          cancel: Callable[[str], None]) -> int:
    """The status of ``GET path`` asked of an in-process app (a health check): the request
    goes through ``submit``; past ``timeout_s`` it is cancelled and ``TimeoutError`` raised.
    The app sees it as a request like any other, from ``User-Agent: ember-probe``."""
    target, _, query = path.partition("?")
    request: Message = {
        "id": f"ember-probe-{next(_probes)}", "method": "GET", "path": unquote(target),
        "root_path": "", "query": query.encode("latin-1"), "body": b"", "client": None,
        "headers": [(b"host", b"localhost"), (b"user-agent", b"ember-probe")],
        "probe": True,  # its logs belong to no request
    }
    responder = ProbeResponder()
    submit(request, responder)
    try:
        return responder.wait(timeout_s)
    finally:
        if not responder.finished:
            cancel(str(request["id"]))

