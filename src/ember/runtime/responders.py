"""Where the response of one HTTP request goes, inside an instance, as the app produces it.

* ``StreamResponder``: an ``http`` request's response, sent as it comes (``http_start``
  then ``http_body`` frames), with flow control: at most ``protocol.WINDOW_BYTES`` sent and
  not yet acknowledged;
* ``InvokeResponder``: the response to the ``POST /invoke`` an ``invoke`` message
  became, collected into one ``result`` or ``error`` frame (below 300 is the result).

Standard library only, like the rest of the runtime.
"""

from __future__ import annotations

import contextlib
import threading
import time
from typing import Any, Protocol

from ember.runtime import protocol
from ember.runtime.capture import log_uncaught
from ember.runtime.protocol import FrameSocket, Message, describe_error

# Bodies travel in frames of at most this size, whatever chunk sizes the app writes.
CHUNK_BYTES = 1024 * 1024

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


class Collected:
    """A responder that collects the whole answer in memory, bounded by its size: there is
    nothing to flow-control and nothing to cancel."""

    def credit(self, size: int) -> None:
        pass

    def cancel(self) -> None:
        pass

    async def wait_room_async(self) -> None:
        pass


class InvokeResponder(Collected):
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


class ProbeResponder(Collected):
    """Takes the status of a health check's response (the body is dropped) for a thread
    that waits for it."""

    def __init__(self) -> None:
        self.started = False
        self.finished = False
        self.blocking = True
        self.status = 0
        self.error: BaseException | None = None
        self._done = threading.Event()

    def start(self, status: int, headers: Headers) -> None:
        self.status = int(status)

    def body(self, data: bytes, more: bool) -> None:
        self.started = True
        if not more and not self.finished:
            self.finished = True
            self._done.set()

    def fail(self, exc: BaseException) -> None:
        if not self.finished:
            self.finished = True
            self.error = exc
            self._done.set()

    def wait(self, timeout_s: float) -> int:
        """The status; raises ``TimeoutError`` without an answer within ``timeout_s``, and
        ``RuntimeError`` when the app failed."""
        if not self._done.wait(timeout_s):
            raise TimeoutError(f"no answer within {timeout_s:g} s")
        if self.error is not None:
            raise RuntimeError(f"the app failed: {type(self.error).__name__}: {self.error}")
        return self.status

