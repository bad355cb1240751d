"""Ordered Redis streams through a real server: 1,000 records over 4 streams, the server
killed with SIGKILL mid-stream and started again — every record is processed, each stream in
order."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import signal
import uuid
from pathlib import Path

import pytest
import redis.asyncio as aioredis

from tests import apicalls as api
from tests.conftest import make_zip
from tests.e2e.test_async_crash import _start
from tests.e2e.test_server_process import _free_port
from tests.queue.conftest import REDIS_URL
from tests.waiting import wait_until

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
    # Past a third of the records, hold while the gate is there: the kill lands mid-stream
    # however fast the records go.
    with open(os.environ["OUT"]) as out:
        done = sum(1 for _ in out)
    while done >= int(os.environ["HOLD_AFTER"]) and os.path.exists(os.environ["GATE"]):
        time.sleep(0.01)
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
    out, log, gate = tmp_path / "processed.txt", tmp_path / "server.log", tmp_path / "gate"
    gate.touch()
    names = [f"ember-test-{uuid.uuid4().hex[:8]}-{i}" for i in range(STREAMS)]
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    proc = _start(home, port, log)
    try:
        code = {"zip": base64.b64encode(make_zip({"main.py": SINK})).decode()}
        api.post(f"{url}/functions", json={
            "name": "sink", "code": code, "config": {"environment": {
                "OUT": str(out), "GATE": str(gate), "HOLD_AFTER": str(RECORDS // 3)}},
        }).raise_for_status()
        api.post(f"{url}/triggers", json={
            "name": "ordered", "function": "sink",
            "source": {"kind": "redis_stream", "url": REDIS_URL, "streams": names,
                       "batch_size": 10, "batch_window_ms": 20},
        }).raise_for_status()
        asyncio.run(_fill(names))
        wait_until(lambda: len(_processed(out)) >= RECORDS // 3, timeout=60,
                   message="a third of the records processed")
        before = len(_processed(out))
        assert before < RECORDS, "everything ran before the kill: nothing was tested"
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        gate.unlink()

        proc = _start(home, port, log)
        with contextlib.suppress(AssertionError):  # what is missing is reported below
            wait_until(lambda: len({n for _, n in _processed(out)}) == RECORDS, timeout=150,
                       interval=0.05, message="every record processed after the restart")
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
