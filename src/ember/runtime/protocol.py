"""The wire format between the server and its instances (and its zygote).

A frame is a 4-byte big-endian length followed by a msgpack map of that many bytes. Every
map has a ``"t"`` key naming the message type; the constants below are the whole
vocabulary. Byte strings stay byte strings (``use_bin_type``), text stays text.

Instance conversation (server ⇄ instance), in order:

    instance → server   hello       {"id": instance_id, "pid": int}
    server → instance   init        {"spec": InitSpec.to_message()}   (``ember.runtime.spec``;
                                                                 after the sandbox holds the pid)
    instance → server   ready       {"init_ms": float}
                     or init_error  {"error": {"type", "message", "traceback"}}   then exits
    server → instance   invoke      {"id", "payload", "content_type", "deadline", "qualifier",
                                     "attempt"}
    instance → server   log*        {"id", "level", "ts", "line"}   (all before the reply)
    instance → server   result      {"id", "body", "content_type", "duration_ms"}
                     or error       {"id", "error": {"type", "message", "traceback", "kind"}}
    server → instance   stop        {"grace_s": float}          pre_stop runs, then exit 0

Idle mode, between requests (none in flight):

    server → instance   freeze      {"id"}                      pre_freeze runs (if any)
    instance → server   log*        {"id": None, ...}           the hook's lines
    instance → server   frozen      {"id", "ok": bool, "error": {...} | None}
                                    then the server stops every process of the instance
                                    (cgroup freezer or SIGSTOP) until a request comes; the
                                    instance is not told when it runs again

``id`` pairs a ``frozen`` with its ``freeze``: one that comes after the server stopped
waiting (the hook ran past ``pre_freeze_timeout_s``) answers nobody.

Web and custom functions (``kind: web | custom``) also take HTTP requests, several at once
(up to the function's ``concurrency``); frames of different requests interleave:

    server → instance   http        {"id", "method", "path", "root_path", "query", "headers",
                                     "body", "deadline", "client"}
    instance → server   http_start  {"id", "status", "headers", "body", "more"}
    instance → server   http_body*  {"id", "body", "more"}      until "more" is false
                     or error       {"id", "error": {...}}      (before http_start only)
    server → instance   ack         {"id", "n"}                 n more body bytes went on
    server → instance   cancel      {"id"}                      the caller gave up

Flow control: an instance keeps at most ``WINDOW_BYTES`` of a response's body sent and not
yet acknowledged; the server acknowledges a chunk once its client has taken it, so a slow
client slows the app down instead of filling the server's memory.

``headers`` are lists of ``[name, value]`` byte-string pairs. A response whose app failed
after it started ends with an ``http_body`` whose ``"abort"`` is true. An ``invoke`` sent to
a web or custom function becomes ``POST /invoke`` with the payload as its body.

Zygote conversation (server ⇄ zygote):

    zygote → server     hello       {"pid": int}
    server → zygote     spawn       {"req": int, "id": instance_id, "connect": socket_path}
    zygote → server     spawned     {"req": int, "pid": int}
                     or spawn_error {"req": int, "error": str}
    zygote → server     exited      {"pid": int, "status": int | None, "signal": int | None}

This module runs inside instances: standard library and msgpack only. The asyncio helpers
take duck-typed streams so that importing this module never imports asyncio.
"""

from __future__ import annotations

import collections
import socket
import struct
import threading
import traceback
from pathlib import Path
from typing import TYPE_CHECKING, Any

import msgpack  # type: ignore[import-untyped, unused-ignore]

if TYPE_CHECKING:
    import asyncio

HELLO = "hello"
INIT = "init"
READY = "ready"
INIT_ERROR = "init_error"
INVOKE = "invoke"
LOG = "log"
RESULT = "result"
ERROR = "error"
STOP = "stop"
FREEZE = "freeze"
FROZEN = "frozen"
HTTP = "http"
HTTP_START = "http_start"
HTTP_BODY = "http_body"
CANCEL = "cancel"
ACK = "ack"
SPAWN = "spawn"
SPAWNED = "spawned"
SPAWN_ERROR = "spawn_error"
EXITED = "exited"
KILL = "kill"
# A version's preloader (``ember.runtime.preload``): what to import, each import as it
# starts, the outcome.
PRELOAD = "preload"
PRELOADING = "preloading"
PRELOADED = "preloaded"

# Error kinds an instance reports, so the server can pick the right Ember error without
# parsing messages: the handler raised, the payload could not be decoded, the return value
# could not be encoded, or the handler ran out of memory (RLIMIT_AS gave a MemoryError).
KIND_HANDLER = "handler"
KIND_PAYLOAD = "payload"
KIND_RESULT = "result"
KIND_MEMORY = "memory"

# Response body bytes an instance may have sent and not had acknowledged (flow control).
WINDOW_BYTES = 4 * 1024 * 1024

# Headers about one connection (one hop), not the request or response: never passed on,
# by the server's HTTP front ends nor by a custom runtime's proxy.
HOP_BY_HOP = frozenset({b"connection", b"keep-alive", b"transfer-encoding", b"upgrade",
                        b"proxy-connection", b"proxy-authorization", b"te", b"trailer"})

# Generous: sync payloads are at most 6 MiB, and a frame also carries results and logs.
MAX_FRAME_BYTES = 64 * 1024 * 1024

_HEADER = struct.Struct(">I")
_RECV_BYTES = 256 * 1024
# Frames of the runtime's own files are left out of the tracebacks a user sees.
_RUNTIME_DIR = str(Path(__file__).resolve().parent)

Message = dict[str, Any]


class ProtocolError(Exception):
    """A frame was malformed, too large, or not a map with a ``"t"`` key."""


def describe_error(exc: BaseException, kind: str = KIND_HANDLER) -> dict[str, str]:
    """The error map of an ``error``/``init_error`` frame, the runtime's frames left out."""
    tb = exc.__traceback__
    while tb is not None and tb.tb_frame.f_code.co_filename.startswith(_RUNTIME_DIR):
        tb = tb.tb_next
    if tb is None:
        tb = exc.__traceback__
    return {
        "type": type(exc).__name__,
        "message": str(exc),
        "traceback": "".join(traceback.format_exception(type(exc), exc, tb)),
        "kind": kind,
    }


def encode(message: Message) -> bytes:
    """One frame: the length header and the msgpack body."""
    body: bytes = msgpack.packb(message, use_bin_type=True)
    if len(body) > MAX_FRAME_BYTES:
        raise ProtocolError(f"frame of {len(body)} bytes is over the {MAX_FRAME_BYTES} limit")
    return _HEADER.pack(len(body)) + body


def decode(body: bytes) -> Message:
    """The message of one frame body (without its header)."""
    try:
        message = msgpack.unpackb(body, raw=False)
    except (ValueError, msgpack.UnpackException) as exc:
        raise ProtocolError(f"undecodable frame: {exc}") from exc
    if not isinstance(message, dict) or not isinstance(message.get("t"), str):
        raise ProtocolError("a frame must be a map with a 't' key")
    return message


def _length(header: bytes) -> int:
    (length,) = _HEADER.unpack(header)
    if length > MAX_FRAME_BYTES:
        raise ProtocolError(f"frame of {length} bytes is over the {MAX_FRAME_BYTES} limit")
    return int(length)


def _recv_exactly(sock: socket.socket, size: int) -> bytes | None:
    buffer = bytearray(size)
    view = memoryview(buffer)
    received = 0
    while received < size:
        count = sock.recv_into(view[received:], size - received)
        if count == 0:
            if received == 0:
                return None
            raise ProtocolError("connection closed in the middle of a frame")
        received += count
    return bytes(buffer)


def read_frame(sock: socket.socket) -> Message | None:
    """Read one message from a blocking socket; ``None`` when the peer closed cleanly."""
    header = _recv_exactly(sock, _HEADER.size)
    if header is None:
        return None
    length = _length(header)
    body = _recv_exactly(sock, length) if length else b""
    if body is None:
        raise ProtocolError("connection closed in the middle of a frame")
    return decode(body)


class FrameSocket:
    """A blocking socket that sends whole frames from any thread (one lock per socket).

    Log reader threads and the main loop of an instance share one connection; the lock keeps
    their frames from interleaving.
    """

    def __init__(self, sock: socket.socket, *, buffered: bool = False) -> None:
        """``buffered``: read whatever has arrived and keep the frames beyond the first
        (one system call a frame instead of two); only for a socket that nothing else
        reads, in this process or a child."""
        self.sock = sock
        self._lock = threading.Lock()
        self._frames = FrameBuffer() if buffered else None
        self._ready: collections.deque[Message] = collections.deque()

    def send(self, message: Message) -> None:
        """Send one frame; raises ``OSError`` when the server is gone."""
        data = encode(message)
        with self._lock:
            self.sock.sendall(data)

    def recv(self) -> Message | None:
        """Read one frame; only one thread (the main loop) reads."""
        if self._frames is None:
            return read_frame(self.sock)
        while not self._ready:
            chunk = self.sock.recv(_RECV_BYTES)
            if not chunk:
                if self._frames.partial:
                    raise ProtocolError("connection closed in the middle of a frame")
                return None
            self._ready.extend(self._frames.feed(chunk))
        return self._ready.popleft()

    def recv_ready(self) -> list[Message | None]:
        """The frames that have arrived, without waiting (buffered sockets only): what the
        socket holds now, read once; ``None`` last at the end of the stream. For a reader
        that an event loop wakes when the socket is readable."""
        assert self._frames is not None, "recv_ready needs a buffered FrameSocket"
        messages: list[Message | None] = [*self._ready]
        self._ready.clear()
        try:
            chunk = self.sock.recv(_RECV_BYTES, socket.MSG_DONTWAIT)
        except BlockingIOError:
            return messages
        if not chunk:
            if self._frames.partial:
                raise ProtocolError("connection closed in the middle of a frame")
            messages.append(None)
            return messages
        messages.extend(self._frames.feed(chunk))
        return messages

    def close(self) -> None:
        self.sock.close()


async def read_frame_async(reader: asyncio.StreamReader) -> Message | None:
    """Read one message from an asyncio stream; ``None`` at a clean end of stream."""
    try:
        header = await reader.readexactly(_HEADER.size)
    except EOFError as exc:  # IncompleteReadError is an EOFError; avoids importing asyncio
        if getattr(exc, "partial", b""):
            raise ProtocolError("connection closed in the middle of a frame") from exc
        return None
    length = _length(header)
    try:
        body = await reader.readexactly(length) if length else b""
    except EOFError as exc:
        raise ProtocolError("connection closed in the middle of a frame") from exc
    return decode(body)


class FrameBuffer:
    """Splits a byte stream into messages: ``feed`` what arrived, take the whole frames
    in it; a frame cut across reads waits for the rest. One read of a stream can then
    carry any number of frames, where reading each header and body apart costs two
    awaits a frame."""

    def __init__(self) -> None:
        self._data = bytearray()

    def feed(self, chunk: bytes) -> list[Message]:
        data = self._data
        data += chunk
        messages = []
        start, size = 0, len(data)
        while size - start >= _HEADER.size:
            (length,) = _HEADER.unpack_from(data, start)
            if length > MAX_FRAME_BYTES:
                raise ProtocolError(
                    f"frame of {length} bytes is over the {MAX_FRAME_BYTES} limit")
            end = start + _HEADER.size + length
            if end > size:
                break
            messages.append(decode(bytes(data[start + _HEADER.size:end])))
            start = end
        if start:
            del data[:start]
        return messages

    @property
    def partial(self) -> bool:
        """Whether part of a frame is held (at the end of the stream: a cut frame)."""
        return bool(self._data)


def write_frame_async(writer: asyncio.StreamWriter, message: Message) -> None:
    """Queue one frame on an asyncio stream (the caller drains when it needs to)."""
    writer.write(encode(message))
