"""ASGI apps (FastAPI, Starlette, ...) inside an instance: one event loop in a thread of
its own serves every request, with the lifespan protocol run at start and stop."""

from __future__ import annotations

import contextlib
import inspect
import sys
import threading
from collections.abc import Callable
from typing import Any
from urllib.parse import quote

from ember.runtime.capture import current_request
from ember.runtime.protocol import FrameSocket, Message
from ember.runtime.responders import Cancelled, Responder
from ember.runtime.web import probe, request_headers, server_address


def is_asgi(app: Any) -> bool:
    """Whether ``app`` is an ASGI 3 app (a coroutine function, or an object whose
    ``__call__`` is one); otherwise it is taken for WSGI."""
    if inspect.iscoroutinefunction(app):
        return True
    call = getattr(app, "__call__", None)  # noqa: B004 - the method itself is inspected
    return call is not None and inspect.iscoroutinefunction(call)


class AsgiServer:
    """An ASGI app on an event loop in a thread of its own."""

    def __init__(self, app: Any) -> None:
        import asyncio

        self._asyncio = asyncio
        self.app = app
        self.loop = asyncio.new_event_loop()
        self.state: dict[str, Any] = {}
        self._tasks: dict[str, Any] = {}
        self._starting: set[Any] = set()  # tasks made on the loop, until they end
        self._thread = threading.Thread(target=self._run, name="ember-asgi", daemon=True)
        self._lifespan: Any = None
        self._lifespan_in: Any = None
        self._lifespan_out: Any = None

    def _run(self) -> None:
        self._asyncio.set_event_loop(self.loop)
        self.loop.run_forever()

    def _call(self, coroutine: Any, timeout_s: float | None) -> Any:
        future = self._asyncio.run_coroutine_threadsafe(coroutine, self.loop)
        try:
            return future.result(timeout_s)
        except TimeoutError:
            future.cancel()
            raise

    def start(self, timeout_s: float) -> None:
        self._thread.start()
        try:
            self._call(self._startup(), timeout_s)
        except TimeoutError:
            raise TimeoutError(
                f"the app's lifespan startup did not finish within {timeout_s:g} s"
            ) from None

    async def _startup(self) -> None:
        asyncio = self._asyncio
        self._lifespan_in = asyncio.Queue()
        self._lifespan_out = asyncio.Queue()
        scope = {"type": "lifespan", "asgi": {"version": "3.0", "spec_version": "2.0"},
                 "state": self.state}
        await self._lifespan_in.put({"type": "lifespan.startup"})
        self._lifespan = self.loop.create_task(self._run_lifespan(scope))
        message = await self._lifespan_out.get()
        if message is None:
            self._lifespan = None  # the app does not do lifespan: fine
            return
        if message["type"] == "lifespan.startup.failed":
            raise RuntimeError(f"the app's startup failed: {message.get('message', '')}")

    async def _run_lifespan(self, scope: dict[str, Any]) -> None:
        answered = False

        async def send(message: dict[str, Any]) -> None:
            nonlocal answered
            answered = True
            await self._lifespan_out.put(message)

        try:
            await self.app(scope, self._lifespan_in.get, send)
        except Exception:
            # Raised before answering startup: the app does not do lifespan, as uvicorn's
            # "auto" mode reads it too. Raised later: the app's shutdown failed; say so.
            if answered:
                import traceback

                traceback.print_exc()
        finally:
            await self._lifespan_out.put(None)

    def submit(self, request: Message, responder: Responder) -> None:
        coroutine = self._serve(request, responder)
        if threading.get_ident() == self._thread.ident:  # frames read on the loop
            task = self.loop.create_task(coroutine)
            self._starting.add(task)
            task.add_done_callback(self._starting.discard)
        else:  # a health check's probe
            self._asyncio.run_coroutine_threadsafe(coroutine, self.loop)

    def read_frames(self, conn: FrameSocket, on_frame: Callable[[Message], None],
                    on_end: Callable[[BaseException | None], None]) -> None:
        """From now on read ``conn``'s frames on the app's loop and hand each to
        ``on_frame`` there, so that a request starts on the thread that serves it: no
        second thread to wake for every request. ``on_end`` is called there once, when
        the stream ends: with the error that ended it, or None at its clean end."""
        fd = conn.sock.fileno()

        def readable() -> None:
            try:
                for message in conn.recv_ready():
                    if message is None:
                        self.loop.remove_reader(fd)
                        on_end(None)
                        return
                    on_frame(message)
            except BaseException as exc:  # reading or handling: the instance cannot go on
                self.loop.remove_reader(fd)
                on_end(exc)

        self.loop.call_soon_threadsafe(self.loop.add_reader, fd, readable)

    async def _serve(self, request: Message, responder: Responder) -> None:
        asyncio = self._asyncio
        request_id = request["id"]
        # This task's own context; a health check's logs belong to no request.
        current_request.set(None if request.get("probe") else request_id)
        self._tasks[request_id] = asyncio.current_task()
        headers = request_headers(request)
        path = str(request.get("root_path") or "") + str(request["path"])
        client = request.get("client")
        scope = {
            "type": "http",
            "asgi": {"version": "3.0", "spec_version": "2.3"},
            "http_version": "1.1",
            "method": str(request["method"]),
            "scheme": "http",
            "path": path,
            "raw_path": quote(path).encode("ascii"),
            "query_string": bytes(request.get("query") or b""),
            "root_path": str(request.get("root_path") or ""),
            "headers": headers,
            "client": tuple(client) if client else None,
            "server": server_address(headers),
            "state": dict(self.state),
        }
        body = bytes(request.get("body") or b"")
        received = False
        finished = asyncio.Event()
        responder.blocking = False  # on the loop: ``send`` waits for room instead

        async def receive() -> dict[str, Any]:
            nonlocal received
            if not received:
                received = True
                return {"type": "http.request", "body": body, "more_body": False}
            await finished.wait()
            return {"type": "http.disconnect"}

        async def send(message: dict[str, Any]) -> None:
            kind = message["type"]
            if kind == "http.response.start":
                responder.start(int(message["status"]), list(message.get("headers") or ()))
            elif kind == "http.response.body":
                more = bool(message.get("more_body", False))
                if more:
                    await responder.wait_room_async()
                responder.body(message.get("body", b""), more)
                if not more:
                    finished.set()

        try:
            await self.app(scope, receive, send)
            if not responder.finished:
                if responder.started:
                    responder.body(b"", False)
                else:
                    responder.fail(RuntimeError("the app returned without sending a response"))
        except asyncio.CancelledError:
            responder.fail(Cancelled("the request was cancelled"))
        except BaseException as exc:
            responder.fail(exc)
        finally:
            finished.set()
            self._tasks.pop(request_id, None)

    def probe(self, path: str, timeout_s: float) -> int:
        """A health check: ``GET path`` on the app's loop, like any request."""
        return probe(path, timeout_s, self.submit, self.cancel)

    def cancel(self, request_id: str) -> None:
        def cancel() -> None:
            task = self._tasks.get(request_id)
            if task is not None:
                task.cancel()

        self.loop.call_soon_threadsafe(cancel)

    def stop(self, grace_s: float) -> None:
        if self._lifespan is not None:
            with contextlib.suppress(Exception):
                self._call(self._shutdown(), grace_s)
        self.loop.call_soon_threadsafe(self.loop.stop)

    async def _shutdown(self) -> None:
        await self._lifespan_in.put({"type": "lifespan.shutdown"})
        message = await self._lifespan_out.get()
        if message is not None and message["type"] == "lifespan.shutdown.failed":
            print(f"the app's shutdown failed: {message.get('message', '')}", file=sys.stderr)
