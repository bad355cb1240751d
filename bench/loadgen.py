"""A small HTTP/1.1 load generator on raw asyncio streams: keep-alive connections, each
sending one request after another. httpx's pool costs more CPU per request than the servers
under test, which on a 2-core machine would measure the client instead."""

from __future__ import annotations

import asyncio
import time
from urllib.parse import urlsplit

import apikey


def request_bytes(url: str, body: bytes, headers: dict[str, str]) -> tuple[str, int, bytes]:
    parts = urlsplit(url)
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    lines = [f"POST {path} HTTP/1.1", f"Host: {parts.hostname}:{parts.port}",
             "Content-Type: application/json", f"Content-Length: {len(body)}"]
    lines += [f"{k}: {v}" for k, v in headers.items()]
    raw = ("\r\n".join(lines) + "\r\n\r\n").encode() + body
    return parts.hostname or "127.0.0.1", parts.port or 80, raw


async def read_response(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value.strip())
    return status, await reader.readexactly(length)


async def run(
    url: str, *, connections: int, requests: int | None = None, seconds: float | None = None,
    body: bytes = b'{"n": 1}', headers: dict[str, str] | None = None,
) -> tuple[float, list[bytes]]:
    """Send ``requests`` requests (or for ``seconds``) over ``connections`` connections;
    return (requests per second, bodies of the answers). Any non-2xx answer raises."""
    if "/http/" not in url:  # Ember's API takes the benchmark server's admin key
        headers = {**apikey.AUTH, **(headers or {})}
    host, port, raw = request_bytes(url, body, headers or {})
    remaining = requests
    bodies: list[bytes] = []
    stop_at = None

    async def connection() -> None:
        nonlocal remaining
        reader, writer = await asyncio.open_connection(host, port)
        try:
            while True:
                if remaining is not None:
                    if remaining <= 0:
                        return
                    remaining -= 1
                elif stop_at is not None and time.perf_counter() >= stop_at:
                    return
                writer.write(raw)
                status, answer = await read_response(reader)
                if not 200 <= status < 300:
                    raise RuntimeError(f"{status}: {answer[:200]!r}")
                bodies.append(answer)
        finally:
            writer.close()
            await writer.wait_closed()

    started = time.perf_counter()
    if seconds is not None:
        stop_at = started + seconds
    await asyncio.gather(*(connection() for _ in range(connections)))
    return len(bodies) / (time.perf_counter() - started), bodies
