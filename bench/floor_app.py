"""The floor of running a function outside the server: a bare ASGI app on uvicorn that
hands every request to one of ``FLOOR_WORKERS`` worker processes over a Unix socket
(length-prefixed msgpack, as Ember's instances speak) and answers what the worker
returns — the same JSON as the baseline. No platform in between: what any server that
keeps functions in processes of their own pays for the hop, on this machine.

The workers are forked at startup, one request at a time each (as a handler instance),
and the app waits for a free one when all are busy."""

from __future__ import annotations

import asyncio
import os
import socket
import struct
from collections import deque
from typing import Any

import msgpack
import orjson

WORKERS = int(os.environ.get("FLOOR_WORKERS", "32"))
_HEADER = struct.Struct(">I")


def _serve(sock: socket.socket) -> None:
    """A worker: answer each frame with the handler's result until the server goes."""
    stream = sock.makefile("rb", buffering=65536)
    while True:
        header = stream.read(_HEADER.size)
        if len(header) < _HEADER.size:
            return
        message = msgpack.unpackb(stream.read(_HEADER.unpack(header)[0]))
        event = orjson.loads(message["payload"] or b"null")
        body = orjson.dumps({"ok": True, "echo": event})
        reply = msgpack.packb({"t": "result", "id": message["id"], "body": body,
                               "content_type": "application/json", "duration_ms": 0.0})
        sock.sendall(_HEADER.pack(len(reply)) + reply)


class _Worker:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    async def call(self, message: dict[str, Any]) -> dict[str, Any]:
        frame = msgpack.packb(message)
        self.writer.write(_HEADER.pack(len(frame)) + frame)
        header = await self.reader.readexactly(_HEADER.size)
        reply: dict[str, Any] = msgpack.unpackb(
            await self.reader.readexactly(_HEADER.unpack(header)[0]))
        return reply


_idle: list[_Worker] = []
_waiting: deque[asyncio.Future[None]] = deque()


async def _start() -> None:
    for _ in range(WORKERS):
        parent, child = socket.socketpair()
        if os.fork() == 0:
            parent.close()
            try:
                _serve(child)
            finally:
                os._exit(0)
        child.close()
        _idle.append(_Worker(*await asyncio.open_unix_connection(sock=parent)))


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await _start()
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    if scope["type"] != "http":
        return
    chunks = []
    while True:
        message = await receive()
        chunks.append(message.get("body", b""))
        if not message.get("more_body"):
            break
    while not _idle:
        waiter = asyncio.get_running_loop().create_future()
        _waiting.append(waiter)
        await waiter
    worker = _idle.pop()
    try:
        reply = await worker.call({"t": "invoke", "id": "r", "payload": b"".join(chunks),
                                   "content_type": "application/json"})
    finally:
        _idle.append(worker)
        if _waiting:
            _waiting.popleft().set_result(None)
    body = reply["body"]
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"application/json"),
                            (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})
