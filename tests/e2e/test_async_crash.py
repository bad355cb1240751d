"""Nothing accepted is lost: 2,000 async events, the server killed with SIGKILL mid-run and
started again on the same data — every event completes, and those whose attempt the kill
cut short run again as attempt 2. On the embedded queue and on Redis."""

from __future__ import annotations

import asyncio
import base64
import os
import signal
import sqlite3
import subprocess
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import redis

from tests import apicalls as api
from tests.conftest import AUTH, make_zip
from tests.e2e.test_server_process import EMBER, _free_port
from tests.queue.conftest import REDIS_URL, _drop_redis_keys
from tests.waiting import wait_until

EVENTS = 2000
RECORDER = """
import os

def handler(event, context):
    line = f"{context.request_id} {context.attempt}\\n".encode()
    fd = os.open(os.environ["OUT"], os.O_WRONLY | os.O_APPEND | os.O_CREAT)
    try:
        os.write(fd, line)
    finally:
        os.close(fd)
    return event["i"]
"""


@pytest.fixture(params=["embedded", "redis"])
def queue_env(request: pytest.FixtureRequest) -> Iterator[dict[str, str]]:
    """The server's queue settings: the embedded queue, or Redis under a fresh prefix."""
    if request.param == "embedded":
        yield {"EMBER_QUEUE_URL": ""}
        return
    prefix = f"ember-test-{uuid.uuid4().hex[:12]}"
    yield {"EMBER_QUEUE_URL": REDIS_URL, "EMBER_QUEUE_PREFIX": prefix}
    asyncio.run(_drop_redis_keys(prefix))


def _start(home: Path, port: int, log: Path, queue_env: dict[str, str] | None = None
           ) -> subprocess.Popen[bytes]:
    # The functions of these tests write to files of the test's: no sandbox (the crash
    # safety of queues and workflows is what they check; tests/sandbox checks the sandbox).
    env = {**os.environ, "EMBER_ASYNC_LEASE_S": "2", "EMBER_ASYNC_CONCURRENCY": "16",
           "EMBER_SANDBOX": "process", **(queue_env or {})}
    with log.open("ab") as out:
        proc = subprocess.Popen(
            [EMBER, "server", "--port", str(port), "--home", str(home)],
            stdout=out, stderr=subprocess.STDOUT, env=env,
        )

    def healthy() -> bool:
        assert proc.poll() is None, log.read_text()
        try:
            return api.get(f"http://127.0.0.1:{port}/healthz").status_code == 200
        except httpx.HTTPError:
            return False

    wait_until(healthy, timeout=60, interval=0.05, message="the server answers /healthz")
    return proc


def _runs(out: Path) -> list[tuple[str, int]]:
    """(request id, context.attempt) of every run the recorder wrote down."""
    try:
        text = out.read_text()
    except FileNotFoundError:
        return []
    return [(line.split()[0], int(line.split()[1])) for line in text.splitlines()
            if len(line.split()) == 2]


def _lines(out: Path) -> list[str]:
    return [request_id for request_id, _ in _runs(out)]


def _leased(home: Path, queue_env: dict[str, str]) -> set[str]:
    """Events the killed server held: claimed, never acknowledged nor put back."""
    prefix = queue_env.get("EMBER_QUEUE_PREFIX")
    if prefix is None:
        with sqlite3.connect(home / "queue.db") as conn:
            return {row[0] for row in conn.execute(
                "SELECT id FROM events WHERE lease_token IS NOT NULL")}
    client = redis.Redis.from_url(REDIS_URL, decode_responses=True)
    try:
        entries = set(client.zrange(f"{prefix}:lease:recorder", 0, -1))
        ids = client.hgetall(f"{prefix}:entry:recorder")
        return {task_id for task_id, entry in ids.items() if entry in entries}
    finally:
        client.close()


async def _submit_all(url: str) -> list[str]:
    limits = httpx.Limits(max_connections=32)
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=60,
                                 headers=AUTH) as client:
        semaphore = asyncio.Semaphore(32)

        async def one(i: int) -> str:
            async with semaphore:
                answer = await client.post(
                    "/functions/recorder/invoke", json={"i": i},
                    headers={"X-Ember-Invocation-Type": "async"},
                )
                assert answer.status_code == 202, answer.text
                return str(answer.json()["request_id"])

        return await asyncio.gather(*(one(i) for i in range(EVENTS)))


def _statuses(url: str) -> Counter[str]:
    statuses: Counter[str] = Counter()
    cursor = None
    while True:
        params: dict[str, str | int] = {"limit": 1000}
        if cursor:
            params["cursor"] = cursor
        page = api.get(f"{url}/functions/recorder/tasks", params=params).json()
        statuses.update(t["status"] for t in page["tasks"])
        cursor = page["next_cursor"]
        if not cursor:
            return statuses


@pytest.mark.timeout(480)
def test_sigkill_mid_run_loses_no_event(home: Path, tmp_path: Path,
                                        queue_env: dict[str, str]) -> None:
    out = tmp_path / "runs.txt"
    log = tmp_path / "server.log"
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    proc = _start(home, port, log, queue_env)
    try:
        code = {"zip": base64.b64encode(make_zip({"main.py": RECORDER})).decode()}
        created = api.post(f"{url}/functions", json={
            "name": "recorder", "code": code,
            "config": {"environment": {"OUT": str(out)}, "max_instances": 8},
        })
        assert created.status_code == 201, created.text
        # Queue the whole backlog first, then let it run and kill the server in the middle.
        api.post(f"{url}/functions/recorder/pause").raise_for_status()
        ids = asyncio.run(_submit_all(url))
        assert len(set(ids)) == EVENTS
        api.post(f"{url}/functions/recorder/resume").raise_for_status()
        # Kill it while the backlog is being worked through.
        wait_until(lambda: len(_lines(out)) >= EVENTS // 4, timeout=120,
                   message="a quarter of the backlog ran")
        ran_before = len(_lines(out))
        assert ran_before < EVENTS, "the backlog finished before the kill: nothing was tested"
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    cut_short = _leased(home, queue_env)
    assert cut_short, "the kill found no event running: no redelivery was tested"

    proc = _start(home, port, log, queue_env)
    try:
        wait_until(lambda: len(set(_lines(out))) >= EVENTS, timeout=240, interval=0.1,
                   message="every event ran")
        runs = Counter(_lines(out))
        missing = set(ids) - set(runs)
        duplicates = sum(n - 1 for n in runs.values())
        print(f"\n{EVENTS} events: {ran_before} ran before SIGKILL, "
              f"{len(runs)} ran in all, {duplicates} ran twice (at-least-once), "
              f"{len(missing)} lost")
        assert not missing, f"{len(missing)} events never ran"
        # The last acknowledgements may trail the last runs.
        wait_until(lambda: _statuses(url) == Counter({"succeeded": EVENTS}), timeout=60,
                   interval=0.1, message="every task succeeded")
        # A redelivery is a new attempt: the handler and the task say so.
        attempts: dict[str, list[int]] = {}
        for request_id, attempt in _runs(out):
            attempts.setdefault(request_id, []).append(attempt)
        for request_id in cut_short:
            assert max(attempts[request_id]) >= 2, (request_id, attempts[request_id])
            task = api.get(f"{url}/tasks/{request_id}").json()
            assert task["attempts"] >= 2, task
            assert task["history"][0]["outcome"] == "interrupted", task
            assert task["history"][-1] == task["history"][-1] | {
                "attempt": task["attempts"], "outcome": "success"}, task
        for request_id, seen in attempts.items():
            assert seen == sorted(set(seen)), (request_id, seen)  # no attempt ran twice
    finally:
        proc.terminate()
        proc.wait(timeout=30)
