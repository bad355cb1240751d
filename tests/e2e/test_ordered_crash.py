"""Ordered Redis streams through a real server: 1,000 records over 4 streams, the server
killed with SIGKILL mid-stream and started again — every record is processed, each stream in
order."""

from __future__ import annotations

import asyncio
import base64
import signal
import time
import uuid
from pathlib import Path

import httpx
import pytest
import redis.asyncio as aioredis

from tests.conftest import make_zip
from tests.e2e.test_async_crash import _start
from tests.e2e.test_server_process import _free_port
from tests.queue.conftest import REDIS_URL

RECORDS = 1000
STREAMS = 4
SINK = """
import os, time

def handler(event, context):
    lines = "".join(
        f"{event['data']['stream']} {record['fields']['n']}\\n"
        for record in event["data"]["records"]
    )
    fd = os.open(os.environ["OUT"], os.O_WRONLY | os.O_APPEND | os.O_CREAT)
    try:
        os.write(fd, lines.encode())
    finally:
        os.close(fd)
    time.sleep(0.05)  # slow enough that the kill lands mid-stream
    return len(event["data"]["records"])
"""


async def _fill(names: list[str]) -> None:
    client = aioredis.from_url(REDIS_URL)
    try:
        pipe = client.pipeline()
        for n in range(RECORDS):
            pipe.xadd(names[n % STREAMS], {"n": str(n)})
        await pipe.execute()
    finally:
        await client.aclose()


async def _drop(names: list[str]) -> None:
    client = aioredis.from_url(REDIS_URL)
    try:
        await client.delete(*names, *(f"{n}:dead" for n in names))
    finally:
        await client.aclose()


def _processed(out: Path) -> list[tuple[str, int]]:
    if not out.exists():
        return []
    return [(s, int(n)) for s, n in (line.split() for line in out.read_text().splitlines())]


@pytest.mark.timeout(240)
def test_ordered_streams_survive_sigkill(home: Path, tmp_path: Path) -> None:
    out, log = tmp_path / "processed.txt", tmp_path / "server.log"
    names = [f"ember-test-{uuid.uuid4().hex[:8]}-{i}" for i in range(STREAMS)]
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    proc = _start(home, port, log)
    try:
        code = {"zip": base64.b64encode(make_zip({"main.py": SINK})).decode()}
        httpx.post(f"{url}/functions", json={
            "name": "sink", "code": code, "config": {"environment": {"OUT": str(out)}},
        }).raise_for_status()
        httpx.post(f"{url}/triggers", json={
            "name": "ordered", "function": "sink",
            "source": {"kind": "redis_stream", "url": REDIS_URL, "streams": names,
                       "batch_size": 10, "batch_window_ms": 20},
        }).raise_for_status()
        asyncio.run(_fill(names))
        deadline = time.monotonic() + 60
        while len(_processed(out)) < RECORDS // 3 and time.monotonic() < deadline:
            time.sleep(0.01)
        before = len(_processed(out))
        assert before < RECORDS, "everything ran before the kill: nothing was tested"
        proc.send_signal(signal.SIGKILL)
        proc.wait()

        proc = _start(home, port, log)
        deadline = time.monotonic() + 120
        while len({n for _, n in _processed(out)}) < RECORDS and time.monotonic() < deadline:
            time.sleep(0.05)
        processed = _processed(out)
        numbers = {n for _, n in processed}
        missing = set(range(RECORDS)) - numbers
        print(f"\n{RECORDS} records over {STREAMS} streams: {before} processed before "
              f"SIGKILL, {len(processed) - len(numbers)} processed twice, {len(missing)} lost")
        assert not missing
        for index, name in enumerate(names):
            # First occurrences keep the stream's order; a batch redelivered after the crash
            # repeats records already seen, never reorders them.
            firsts: list[int] = []
            seen: set[int] = set()
            for stream, n in processed:
                if stream == name and n not in seen:
                    seen.add(n)
                    firsts.append(n)
            assert firsts == list(range(index, RECORDS, STREAMS)), name
    finally:
        if proc.poll() is None:
            proc.terminate()
            proc.wait(timeout=30)
        asyncio.run(_drop(names))
