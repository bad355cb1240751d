"""Web functions and custom runtimes, inside an instance.

HTTP requests arrive as ``http`` frames (``ember.runtime.protocol``) and are served, several
at once, by one of three servers:

* ``AsgiServer``: an ASGI app (FastAPI, Starlette, ...) on an event loop of its own thread,
  with the lifespan protocol run at start and stop;
* ``WsgiServer``: a WSGI app (Flask, Django, ...) on a pool of ``concurrency`` threads;
* ``CustomServer``: the user's own HTTP server, any language, started by a command with
  ``$PORT`` set, probed until ready, health-checked while it runs, and reached through a
  local HTTP connection per worker thread.

A response goes back as ``http_start`` then ``http_body`` frames as the app produces it, so
streamed responses stream. An ``invoke`` (a direct or async invocation, an event of a
non-HTTP trigger) becomes ``POST /invoke`` with the payload as its body; a status below 300
is the result, any other an error.

Standard library only, like the rest of the runtime.
"""

from __future__ import annotations

import contextlib
import functools
import http.client
import inspect
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Protocol
from urllib.parse import quote

from ember.runtime import protocol
from ember.runtime.capture import current_request, log_uncaught
from ember.runtime.main import _libc, describe_error, set_parent_death_signal
from ember.runtime.protocol import FrameSocket, Message

# Bodies travel in frames of at most this size, whatever chunk sizes the app writes.
CHUNK_BYTES = 1024 * 1024
# Headers about one connection (one hop), not the request or response: never passed on.
HOP_BY_HOP = frozenset({b"connection", b"keep-alive", b"transfer-encoding", b"upgrade",
                        b"proxy-connection", b"proxy-authorization", b"te", b"trailer"})

Headers = list[tuple[bytes, bytes]]


class Cancelled(ConnectionAbortedError):
    """The caller of a request went away (or its time ran out): stop producing."""


class Responder(Protocol):
    """Where one request's response goes, as the app produces it."""

    started: bool
    finished: bool
    blocking: bool  # whether ``body`` waits for room itself (threads) or not (event loop)

    def start(self, status: int, headers: Headers) -> None: ...

    def body(self, data: bytes, more: bool) -> None: ...

    def fail(self, exc: BaseException) -> None: ...

    def credit(self, size: int) -> None: ...

    def cancel(self) -> None: ...

    async def wait_room_async(self) -> None: ...


class Tracker(Protocol):
    """The runtime's view of requests in flight (log attribution, log flushing)."""

    def before_last_frame(self, request_id: str) -> None: ...

    def done(self, request_id: str) -> None: ...


class StreamResponder:
    """Sends the response of an ``http`` request as it comes: ``http_start`` carries the
    status, headers and the first body chunk; ``http_body`` frames carry the rest."""

    def __init__(self, conn: FrameSocket, request_id: str, tracker: Tracker) -> None:
        self.conn = conn
        self.request_id = request_id
        self.tracker = tracker
        self.started = False
        self.finished = False
        self.blocking = True
        self._head: tuple[int, Headers] | None = None
        # Flow control: body bytes sent and not yet acknowledged by the server.
        self._unacked = 0
        self._cancelled = False
        self._room = threading.Condition()
        self._async_waiter: tuple[Any, Any] | None = None

    def credit(self, size: int) -> None:
        """The server passed ``size`` more body bytes on to its client."""
        with self._room:
            self._unacked -= size
            self._room.notify_all()
            waiter, self._async_waiter = self._async_waiter, None
        _wake(waiter)

    def cancel(self) -> None:
        """The caller is gone: a producer waiting for room gets ``Cancelled``."""
        with self._room:
            self._cancelled = True
            self._room.notify_all()
            waiter, self._async_waiter = self._async_waiter, None
        _wake(waiter)

    def wait_room(self) -> None:
        """Block until the window has room (threads: WSGI, the custom runtime's proxy)."""
        with self._room:
            self._room.wait_for(lambda: self._unacked < protocol.WINDOW_BYTES
                                or self._cancelled)
            if self._cancelled:
                raise Cancelled("the caller went away")

    async def wait_room_async(self) -> None:
        """Wait until the window has room without blocking the event loop (ASGI)."""
        import asyncio

        loop = asyncio.get_running_loop()
        while True:
            with self._room:
                if self._cancelled:
                    raise Cancelled("the caller went away")
                if self._unacked < protocol.WINDOW_BYTES:
                    return
                future = loop.create_future()
                self._async_waiter = (loop, future)
            await future

    def start(self, status: int, headers: Headers) -> None:
        if self.started:
            raise RuntimeError("the response has already started")
        self._head = (int(status), [(bytes(k), bytes(v)) for k, v in headers])

    def body(self, data: bytes, more: bool) -> None:
        if self.finished:
            return
        if self._head is None:
            raise RuntimeError("the app sent a body before starting the response")
        if self._cancelled:
            raise Cancelled("the caller went away")
        if self.blocking and more:
            self.wait_room()
        data = bytes(data)
        while len(data) > CHUNK_BYTES:
            self._send(data[:CHUNK_BYTES], True)
            data = data[CHUNK_BYTES:]
        self._send(data, more)

    def _send(self, data: bytes, more: bool) -> None:
        if not more:
            self.finished = True
            self.tracker.before_last_frame(self.request_id)
        with self._room:
            self._unacked += len(data)
        if not self.started:
            assert self._head is not None
            status, headers = self._head
            self.started = True
            self.conn.send({"t": protocol.HTTP_START, "id": self.request_id, "status": status,
                            "headers": [list(h) for h in headers], "body": data, "more": more})
        elif data or not more:
            self.conn.send({"t": protocol.HTTP_BODY, "id": self.request_id, "body": data,
                            "more": more})
        if not more:
            self.tracker.done(self.request_id)

    def fail(self, exc: BaseException) -> None:
        if self.finished:
            return
        self.finished = True
        if isinstance(exc, Cancelled):
            self.tracker.done(self.request_id)  # nobody listens for this request any more
            return
        error = describe_error(exc)
        log_uncaught(error, self.request_id)
        if not self.started:
            self.tracker.before_last_frame(self.request_id)
            self.conn.send({"t": protocol.ERROR, "id": self.request_id, "error": error})
        else:
            # Headers are out: all that can be said now is that the body is cut short.
            self.tracker.before_last_frame(self.request_id)
            self.conn.send({"t": protocol.HTTP_BODY, "id": self.request_id, "body": b"",
                            "more": False, "abort": True})
        self.tracker.done(self.request_id)


class InvokeResponder:
    """Collects the response to ``POST /invoke`` into the ``result`` or ``error`` frame of an
    ``invoke`` message."""

    def __init__(self, conn: FrameSocket, request_id: str, tracker: Tracker,
                 max_bytes: int) -> None:
        self.conn = conn
        self.request_id = request_id
        self.tracker = tracker
        self.max_bytes = max_bytes
        self.started = False
        self.finished = False
        self.blocking = True
        self._status = 0
        self._content_type = "application/octet-stream"
        self._parts: list[bytes] = []
        self._size = 0
        self._began = time.perf_counter()

    def start(self, status: int, headers: Headers) -> None:
        if self.started:
            raise RuntimeError("the response has already started")
        self._status = int(status)
        for name, value in headers:
            if bytes(name).lower() == b"content-type":
                self._content_type = bytes(value).decode("latin-1")

    def body(self, data: bytes, more: bool) -> None:
        if self.finished:
            return
        self.started = True
        self._size += len(data)
        if self._size > self.max_bytes:
            self.fail(ValueError(f"the response is over the {self.max_bytes} byte limit"))
            return
        self._parts.append(bytes(data))
        if more:
            return
        self.finished = True
        body = b"".join(self._parts)
        reply: Message
        if self._status < 300:
            reply = {"t": protocol.RESULT, "id": self.request_id, "body": body,
                     "content_type": self._content_type,
                     "duration_ms": (time.perf_counter() - self._began) * 1000}
        else:
            text = body[:2000].decode("utf-8", "replace")
            reply = {"t": protocol.ERROR, "id": self.request_id, "error": {
                "type": "HTTPError", "kind": protocol.KIND_HANDLER, "traceback": "",
                "message": f"POST /invoke answered {self._status}: {text}".rstrip(": "),
                "status": self._status,
            }}
        self.tracker.before_last_frame(self.request_id)
        self.conn.send(reply)
        self.tracker.done(self.request_id)

    def fail(self, exc: BaseException) -> None:
        if self.finished:
            return
        self.finished = True
        error = describe_error(exc)
        log_uncaught(error, self.request_id)
        self.tracker.before_last_frame(self.request_id)
        self.conn.send({"t": protocol.ERROR, "id": self.request_id, "error": error})
        self.tracker.done(self.request_id)

    # A collected response is bounded by ``max_bytes``: no flow control.

    def credit(self, size: int) -> None:
        pass

    def cancel(self) -> None:
        pass

    async def wait_room_async(self) -> None:
        pass


def _wake(waiter: tuple[Any, Any] | None) -> None:
    """Resolve an event-loop waiter from any thread."""
    if waiter is None:
        return
    loop, future = waiter

    def resolve() -> None:
        if not future.done():
            future.set_result(None)

    with contextlib.suppress(RuntimeError):  # the loop is closed: nobody waits any more
        loop.call_soon_threadsafe(resolve)


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


def _headers(request: Message) -> Headers:
    return [(bytes(k).lower(), bytes(v)) for k, v in request.get("headers") or ()]


def _host(headers: Headers) -> tuple[str, int]:
    for name, value in headers:
        if name == b"host":
            host, _, port = value.decode("latin-1").rpartition(":")
            if host and port.isdigit():
                return host, int(port)
            return value.decode("latin-1"), 80
    return "localhost", 80


# -- ASGI -------------------------------------------------------------------------------------


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
        self._asyncio.run_coroutine_threadsafe(self._serve(request, responder), self.loop)

    async def _serve(self, request: Message, responder: Responder) -> None:
        asyncio = self._asyncio
        request_id = request["id"]
        current_request.set(request_id)  # this task's own context
        self._tasks[request_id] = asyncio.current_task()
        headers = _headers(request)
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
            "server": _host(headers),
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


# -- WSGI -------------------------------------------------------------------------------------


class WsgiServer:
    """A WSGI app on a pool of threads, one request per thread."""

    def __init__(self, app: Callable[..., Iterable[bytes]], concurrency: int) -> None:
        self.app = app
        self.pool = ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="ember-wsgi")

    def start(self, timeout_s: float) -> None:
        pass

    def submit(self, request: Message, responder: Responder) -> None:
        self.pool.submit(self._serve, request, responder)

    def environ(self, request: Message) -> dict[str, Any]:
        import io

        headers = _headers(request)
        host, port = _host(headers)
        body = bytes(request.get("body") or b"")
        client = request.get("client")
        environ: dict[str, Any] = {
            "REQUEST_METHOD": str(request["method"]),
            "SCRIPT_NAME": str(request.get("root_path") or ""),
            # PEP 3333: native strings holding the bytes of the path, as latin-1.
            "PATH_INFO": str(request["path"]).encode("utf-8").decode("latin-1"),
            "QUERY_STRING": bytes(request.get("query") or b"").decode("latin-1"),
            "SERVER_NAME": host,
            "SERVER_PORT": str(port),
            "SERVER_PROTOCOL": "HTTP/1.1",
            "REMOTE_ADDR": client[0] if client else "",
            "REMOTE_PORT": str(client[1]) if client else "",
            "CONTENT_LENGTH": str(len(body)),
            "wsgi.version": (1, 0),
            "wsgi.url_scheme": "http",
            "wsgi.input": io.BytesIO(body),
            "wsgi.errors": sys.stderr,
            "wsgi.multithread": True,
            "wsgi.multiprocess": True,
            "wsgi.run_once": False,
        }
        for name, value in headers:
            key = name.decode("latin-1").upper().replace("-", "_")
            text = value.decode("latin-1")
            if key == "CONTENT_TYPE":
                environ["CONTENT_TYPE"] = text
            elif key == "CONTENT_LENGTH":
                continue  # the body is whole: its real length is set above
            elif f"HTTP_{key}" in environ:
                environ[f"HTTP_{key}"] += ("; " if key == "COOKIE" else ",") + text
            else:
                environ[f"HTTP_{key}"] = text
        return environ

    def _serve(self, request: Message, responder: Responder) -> None:
        def start_response(status: str, headers: list[tuple[str, str]],
                           exc_info: Any = None) -> Callable[[bytes], None]:
            if exc_info is not None and responder.started:
                raise exc_info[1].with_traceback(exc_info[2])
            # Before the first body chunk, a later call replaces the status (PEP 3333).
            responder.start(int(status.split(" ", 1)[0]),
                            [(k.lower().encode("latin-1"), v.encode("latin-1"))
                             for k, v in headers])
            return write

        def write(data: bytes) -> None:
            responder.body(data, True)

        token = current_request.set(str(request["id"]))
        try:
            result = self.app(self.environ(request), start_response)
            try:
                for chunk in result:
                    if chunk:
                        responder.body(chunk, True)
                responder.body(b"", False)
            finally:
                close = getattr(result, "close", None)
                if close is not None:
                    close()
        except BaseException as exc:
            responder.fail(exc)
        finally:
            current_request.reset(token)

    def cancel(self, request_id: str) -> None:
        pass  # a thread cannot be interrupted; its answer will be dropped by the server

    def stop(self, grace_s: float) -> None:
        self.pool.shutdown(wait=False, cancel_futures=True)


# -- custom runtimes --------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class CustomServer:
    """The user's HTTP server: started by ``command`` in the code directory with ``$PORT``
    set; ready once ``GET probe_path`` answers below 400; replaced (the instance exits)
    after ``failure_threshold`` failed health checks in a row, or when it exits."""

    def __init__(self, command: list[str], code_dir: str, concurrency: int,
                 startup_probe: dict[str, Any] | None,
                 health_check: dict[str, Any] | None,
                 on_fatal: Callable[[str], None]) -> None:
        self.command = command
        self.code_dir = code_dir
        self.probe = {"path": "/", "timeout_s": 10.0, **(startup_probe or {})}
        self.health = health_check
        self.on_fatal = on_fatal
        self.port = 0
        self.process: subprocess.Popen[bytes] | None = None
        self.pool = ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="ember-proxy")
        self._local = threading.local()
        self._stopping = threading.Event()
        self._inflight: dict[str, http.client.HTTPConnection] = {}

    def start(self, timeout_s: float) -> None:
        import resource

        if resource.getrlimit(resource.RLIMIT_AS)[0] != resource.RLIM_INFINITY:
            print("ember: no cgroups on this server, so memory is bounded by address space "
                  "(RLIMIT_AS), which the command inherits: runtimes that reserve much of it "
                  "(Node.js, the JVM, Go) may fail to start; run Ember where cgroups work",
                  file=sys.stderr, flush=True)
        self.port = free_port()
        environment = {**os.environ, "PORT": str(self.port)}
        with contextlib.suppress(OSError):
            _libc()  # loaded before the fork: the child only calls into it
        try:
            # The user's server goes when the instance goes, however the instance ends.
            self.process = subprocess.Popen(
                self.command, cwd=self.code_dir, env=environment, stdin=subprocess.DEVNULL,
                start_new_session=True,
                preexec_fn=functools.partial(set_parent_death_signal, os.getpid()),
            )
        except OSError as exc:
            raise RuntimeError(f"cannot start the command {self.command!r}: {exc}") from exc
        self._wait_ready(min(float(self.probe["timeout_s"]), timeout_s))
        threading.Thread(target=self._watch, name="ember-custom-watch", daemon=True).start()
        if self.health:
            threading.Thread(target=self._check_health, name="ember-health", daemon=True).start()

    def _get(self, path: str, timeout_s: float) -> int:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout_s)
        try:
            conn.request("GET", path, headers={"User-Agent": "ember-probe"})
            response = conn.getresponse()
            response.read()
            return int(response.status)
        finally:
            conn.close()

    def _wait_ready(self, timeout_s: float) -> None:
        assert self.process is not None
        path = str(self.probe["path"])
        deadline = time.monotonic() + timeout_s
        last = "no answer yet"
        delay = 0.02
        while True:
            status = self.process.poll()
            if status is not None:
                raise RuntimeError(
                    f"the command {self.command!r} exited with status {status} before its "
                    f"startup probe GET {path} succeeded"
                )
            left = deadline - time.monotonic()
            if left <= 0:
                self._kill()
                raise TimeoutError(
                    f"the startup probe GET {path} on $PORT ({self.port}) did not succeed "
                    f"within {timeout_s:g} s: {last}"
                )
            try:
                code = self._get(path, max(min(left, 2.0), 0.05))
            except (OSError, http.client.HTTPException) as exc:
                last = f"{type(exc).__name__}: {exc}"
            else:
                if code < 400:
                    return
                last = f"it answered {code}"
            time.sleep(min(delay, max(deadline - time.monotonic(), 0)))
            delay = min(delay * 2, 0.2)

    def _watch(self) -> None:
        assert self.process is not None
        status = self.process.wait()
        if not self._stopping.is_set():
            self.on_fatal(f"the command {self.command!r} exited with status {status}")

    def _check_health(self) -> None:
        assert self.health is not None
        path = str(self.health.get("path", "/"))
        interval = float(self.health.get("interval_s", 10.0))
        timeout = float(self.health.get("timeout_s", 2.0))
        threshold = int(self.health.get("failure_threshold", 3))
        failures = 0
        while not self._stopping.wait(interval):
            try:
                code = self._get(path, timeout)
                problem = f"it answered {code}" if code >= 400 else ""
            except (OSError, http.client.HTTPException) as exc:
                problem = f"{type(exc).__name__}: {exc}"
            if not problem:
                failures = 0
                continue
            failures += 1
            print(f"health check GET {path} failed ({failures}/{threshold}): {problem}",
                  file=sys.stderr, flush=True)
            if failures >= threshold:
                self.on_fatal(f"unhealthy: {threshold} health checks failed in a row")
                return

    def _connection(self) -> http.client.HTTPConnection:
        conn: http.client.HTTPConnection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = http.client.HTTPConnection("127.0.0.1", self.port)
            self._local.conn = conn
        return conn

    def submit(self, request: Message, responder: Responder) -> None:
        self.pool.submit(self._proxy, request, responder)

    def _proxy(self, request: Message, responder: Responder) -> None:
        request_id = request["id"]
        conn = self._connection()
        self._inflight[request_id] = conn
        try:
            target = quote(str(request["path"]))
            query = bytes(request.get("query") or b"")
            if query:
                target += "?" + query.decode("latin-1")
            body = bytes(request.get("body") or b"")
            conn.putrequest(str(request["method"]), target, skip_host=True,
                            skip_accept_encoding=True)
            headers = _headers(request)
            if not any(name == b"host" for name, _ in headers):
                headers.append((b"host", f"127.0.0.1:{self.port}".encode()))  # HTTP/1.1 needs one
            for name, value in headers:
                if name not in HOP_BY_HOP and name != b"content-length":
                    conn.putheader(name.decode("latin-1"), value)
            conn.putheader("Content-Length", str(len(body)))
            conn.endheaders(body)
            response = conn.getresponse()
            responder.start(response.status, [
                (k.lower().encode("latin-1"), v.encode("latin-1"))
                for k, v in response.getheaders()
                if k.lower().encode("latin-1") not in HOP_BY_HOP
                and k.lower() != "content-length"
            ])
            while True:
                chunk = response.read1(65536)
                if not chunk:
                    break
                responder.body(chunk, True)
            responder.body(b"", False)
            if response.will_close:
                conn.close()
        except BaseException as exc:
            conn.close()  # whatever state it was left in, the next request reconnects
            if isinstance(exc, OSError | http.client.HTTPException):
                exc = ConnectionError(f"the custom runtime did not answer: "
                                      f"{type(exc).__name__}: {exc}")
            responder.fail(exc)
        finally:
            self._inflight.pop(request_id, None)

    def cancel(self, request_id: str) -> None:
        conn = self._inflight.get(request_id)
        if conn is not None and conn.sock is not None:
            with contextlib.suppress(OSError):
                conn.sock.shutdown(socket.SHUT_RDWR)

    def _kill(self) -> None:
        self._stopping.set()
        if self.process is not None and self.process.poll() is None:
            with contextlib.suppress(OSError):
                os.killpg(self.process.pid, signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(2.0)

    def stop(self, grace_s: float) -> None:
        self._stopping.set()
        if self.process is not None and self.process.poll() is None:
            with contextlib.suppress(OSError):
                os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(max(grace_s - 0.5, 0.1))
            except subprocess.TimeoutExpired:
                self._kill()
        self.pool.shutdown(wait=False, cancel_futures=True)
