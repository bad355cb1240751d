"""Refuses request bodies over a size limit before they are read into memory."""

from __future__ import annotations

from collections.abc import Callable

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ember.api.errors import error_response
from ember.errors import PayloadTooLarge


class BodyLimit:
    """Pure ASGI middleware: ``limit_for(path)`` gives the largest body accepted on a path.

    A Content-Length over the limit is refused at once; a chunked body is counted as it
    streams in and refused as soon as it crosses the limit."""

    def __init__(self, app: ASGIApp, limit_for: Callable[[str], int]) -> None:
        self._app = app
        self._limit_for = limit_for

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self._app(scope, receive, send)
            return
        limit = self._limit_for(scope["path"])
        for name, value in scope.get("headers", ()):
            if name == b"content-length" and value.isdigit() and int(value) > limit:
                await self._refuse(scope, receive, send, int(value), limit)
                return
        received = 0
        started = False

        async def counting_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise _TooLarge(received)
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self._app(scope, counting_receive, tracking_send)
        except _TooLarge as exc:
            if not started:
                await self._refuse(scope, receive, send, exc.size, limit)

    async def _refuse(
        self, scope: Scope, receive: Receive, send: Send, size: int, limit: int
    ) -> None:
        err = PayloadTooLarge(
            f"request body of {size} bytes is over the {limit} byte limit of {scope['path']}",
            {"size": size, "limit": limit},
        )
        await error_response(err)(scope, receive, send)


class _TooLarge(Exception):
    def __init__(self, size: int) -> None:
        super().__init__(size)
        self.size = size
