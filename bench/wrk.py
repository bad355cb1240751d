"""HTTP load at a fixed number of keep-alive connections, with latency percentiles: wrk
where it is installed (`apt-get install wrk`: C, one thread, so the client takes little of
the machine's CPU), else the asyncio load generator of ``loadgen`` (which costs more CPU
per request than the servers under test: its ratios are lower bounds)."""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass

import loadgen

_UNITS = {"us": 0.001, "ms": 1.0, "s": 1000.0}


@dataclass(frozen=True)
class Load:
    rate: float  # requests per second
    p50_ms: float
    p99_ms: float
    tool: str


def tool() -> str:
    return "wrk" if shutil.which("wrk") else "loadgen"


def run(url: str, *, connections: int, seconds: float, body: bytes = b'{"n": 1}',
        headers: dict[str, str] | None = None) -> Load:
    """POST ``body`` to ``url`` over ``connections`` connections for ``seconds``. Any
    answer other than 2xx fails the run."""
    if "/http/" not in url:  # Ember's API takes the benchmark server's admin key
        import apikey

        headers = {**apikey.AUTH, **(headers or {})}
    if tool() == "wrk":
        return _wrk(url, connections, seconds, body, headers or {})
    return asyncio.run(_loadgen(url, connections, seconds, body, headers or {}))


def _lua(body: bytes, headers: dict[str, str]) -> str:
    lines = ['wrk.method = "POST"', f"wrk.body = {_lua_string(body.decode())}",
             'wrk.headers["Content-Type"] = "application/json"']
    lines += [f"wrk.headers[{_lua_string(k)}] = {_lua_string(v)}" for k, v in headers.items()]
    return "\n".join(lines) + "\n"


def _lua_string(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _wrk(url: str, connections: int, seconds: float, body: bytes,
         headers: dict[str, str]) -> Load:
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as script:
        script.write(_lua(body, headers))
    try:
        out = subprocess.run(
            ["wrk", "-t1", f"-c{connections}", f"-d{max(1, round(seconds))}s", "--latency",
             "-s", script.name, url],
            capture_output=True, text=True, check=True,
        ).stdout
    finally:
        os.unlink(script.name)
    # wrk counts answers other than 2xx and broken connections: a benchmark of errors is
    # no benchmark.
    if "Non-2xx" in out or "Socket errors" in out:
        raise RuntimeError(f"errors under load at {url}:\n{out}")
    rate = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    return Load(rate, _latency(out, "50%"), _latency(out, "99%"), "wrk")


def _latency(out: str, which: str) -> float:
    found = re.search(rf"^\s+{which}\s+([\d.]+)(us|ms|s)\s*$", out, re.MULTILINE)
    if found is None:
        raise RuntimeError(f"no {which} latency in wrk's output:\n{out}")
    return float(found.group(1)) * _UNITS[found.group(2)]


async def _loadgen(url: str, connections: int, seconds: float, body: bytes,
                   headers: dict[str, str]) -> Load:
    host, port, raw = loadgen.request_bytes(url, body, headers)
    latencies: list[float] = []
    stop_at = time.perf_counter() + seconds

    async def connection() -> None:
        reader, writer = await asyncio.open_connection(host, port)
        try:
            while time.perf_counter() < stop_at:
                started = time.perf_counter()
                writer.write(raw)
                status, answer = await loadgen.read_response(reader)
                if not 200 <= status < 300:
                    raise RuntimeError(f"{status}: {answer[:200]!r}")
                latencies.append((time.perf_counter() - started) * 1000)
        finally:
            writer.close()
            await writer.wait_closed()

    started = time.perf_counter()
    await asyncio.gather(*(connection() for _ in range(connections)))
    elapsed = time.perf_counter() - started
    latencies.sort()
    return Load(len(latencies) / elapsed, latencies[len(latencies) // 2],
                latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))], "loadgen")
