"""Async invocation throughput: events/s accepted (202 after a durable write) and events/s
run end to end for a no-op function, on the embedded queue and on Redis, beside two
baselines measured in the same run: the raw uvicorn one (the same client posting to a bare
app) for accepting, and Dramatiq on the same Redis for running (``dramatiq_baseline.py``:
N messages enqueued by 32 producers, then drained by one worker process of 8 threads;
Ember's worker runs in its one server process too).

    .venv/bin/python bench/async_bench.py [--events 4000] [--redis redis://127.0.0.1:6379/0]

"Run end to end" is measured as Dramatiq's drain is: the events are queued while the
function is paused, then the time from resuming it until the queue is empty. Dramatiq is
installed on first use into bench/.venv-dramatiq (its own environment: Ember never imports
it); ``--no-dramatiq`` skips it.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import io
import json
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
import zipfile
from pathlib import Path

import orjson

sys.path.insert(0, str(Path(__file__).parent))
import apikey
import loadgen
from invoke import start_baseline, start_ember

NOOP = "def handler(event, context):\n    return None\n"
CLIENTS = 32
DRAMATIQ = "dramatiq[redis]==2.2.1"
DRAMATIQ_VENV = Path(__file__).resolve().parent / ".venv-dramatiq"


def code_zip() -> str:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("main.py", NOOP)
    return base64.b64encode(buf.getvalue()).decode()


async def post_many(url: str, n: int, headers: dict[str, str]) -> tuple[float, list[str]]:
    rate, bodies = await loadgen.run(url, connections=CLIENTS, requests=n, headers=headers)
    ids = [orjson.loads(b)["request_id"] for b in bodies if b.startswith(b'{"request_id"')]
    return rate, ids


def run_backend(home: Path, events: int, env: dict[str, str]) -> tuple[float, float]:
    """(accepted events/s, run end to end events/s) of one Ember server."""
    import os

    saved = dict(os.environ)
    os.environ.update(env)
    try:
        proc, url = start_ember(home, True)
    finally:
        os.environ.clear()
        os.environ.update(saved)
    try:
        apikey.post(f"{url}/functions", json={"name": "noop", "code": {"zip": code_zip()},
                                             "config": {"max_instances": 8}}).raise_for_status()
        apikey.post(f"{url}/functions/noop/pause").raise_for_status()
        accepted, ids = asyncio.run(post_many(
            f"{url}/functions/noop/invoke", events, {"X-Ember-Invocation-Type": "async"}
        ))
        assert len(set(ids)) == events
        started = time.time()  # the server stamps tasks with the same wall clock
        apikey.post(f"{url}/functions/noop/resume").raise_for_status()
        while True:
            # Dramatiq's drain is timed without polling (it counts in process). Polling the
            # depth often would take the server's CPU from the drain it measures, so the
            # poll is coarse and the end is read afterwards from the tasks themselves.
            stats = apikey.get(f"{url}/functions/noop/stats",
                               params={"window_s": 0.001}).json()
            if stats["queue"]["depth"] == 0:
                break
            time.sleep(0.25)
        elapsed = last_finished(url, "noop", events) - started
        stats = apikey.get(f"{url}/functions/noop/stats", params={"window_s": 3600}).json()
        if stats["invocations"] != events or stats["errors"]:
            raise SystemExit(f"{stats['invocations']} invocations, {stats['errors']} errors "
                             f"(expected {events}, 0)")
        return accepted, events / elapsed
    finally:
        proc.terminate()
        proc.wait()


def last_finished(url: str, function: str, events: int) -> float:
    """When the last of the function's ``events`` tasks finished (the server's wall clock),
    every one of them checked to have succeeded."""
    finished: list[float] = []
    cursor: str | None = None
    while True:
        params: dict[str, str | int] = {"limit": 1000}
        if cursor:
            params["cursor"] = cursor
        page = apikey.get(f"{url}/functions/{function}/tasks", params=params).json()
        for task in page["tasks"]:
            if task["status"] != "succeeded" or task["finished_at"] is None:
                raise SystemExit(f"task {task['id']} is {task['status']}, not succeeded")
            finished.append(task["finished_at"])
        cursor = page["next_cursor"]
        if not cursor:
            break
    if len(finished) != events:
        raise SystemExit(f"{len(finished)} tasks, expected {events}")
    return max(finished)


def dramatiq_python() -> Path:
    """The interpreter of the Dramatiq baseline's own environment, made on first use."""
    python = DRAMATIQ_VENV / "bin" / "python"
    if not python.exists():
        print(f"  (installing {DRAMATIQ} into {DRAMATIQ_VENV})", flush=True)
        subprocess.run([sys.executable, "-m", "venv", str(DRAMATIQ_VENV)], check=True)
        subprocess.run([str(python), "-m", "pip", "install", "-q", DRAMATIQ], check=True)
    return python


def run_dramatiq(events: int, url: str) -> dict[str, float]:
    namespace = f"ember-bench-dramatiq-{uuid.uuid4().hex[:8]}"
    script = Path(__file__).resolve().parent / "dramatiq_baseline.py"
    answer = subprocess.run(
        [str(dramatiq_python()), str(script), "--events", str(events), "--redis", url,
         "--namespace", namespace, "--producers", str(CLIENTS), "--threads", "8"],
        check=True, capture_output=True, text=True,
    )
    figures: dict[str, float] = json.loads(answer.stdout.strip().splitlines()[-1])
    return figures


async def drop_keys(url: str, prefix: str) -> None:
    import redis.asyncio as aioredis

    client = aioredis.from_url(url)
    keys = [k async for k in client.scan_iter(f"{prefix}*")]
    if keys:
        await client.delete(*keys)
    await client.aclose()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=4000)
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/0")
    parser.add_argument("--no-dramatiq", action="store_true")
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="ember-async-bench-"))
    try:
        base_proc, base_url = start_baseline()
        try:
            raw, _ = asyncio.run(post_many(base_url, args.events, {}))
        finally:
            base_proc.terminate()
            base_proc.wait()
        dramatiq = None if args.no_dramatiq else run_dramatiq(args.events, args.redis)
        embedded = run_backend(tmp / "embedded", args.events, {})
        prefix = f"ember-bench-{uuid.uuid4().hex[:8]}"
        try:
            redis = run_backend(tmp / "redis", args.events,
                                {"EMBER_QUEUE_URL": args.redis, "EMBER_QUEUE_PREFIX": prefix})
        finally:
            asyncio.run(drop_keys(args.redis, prefix))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    print(f"async invocation of a no-op function, {args.events} events from {CLIENTS} "
          "concurrent clients (events/s)")
    print(f"  {'':<30} {'accepted':>9} {'run end to end':>15}")
    print(f"  {'raw uvicorn POST':<30} {raw:9.0f} {'':>15}")
    if dramatiq is not None:
        print(f"  {'Dramatiq 2.2.1, Redis (8 thr)':<30} {dramatiq['enqueued_per_s']:9.0f} "
              f"{dramatiq['drained_per_s']:15.0f}")
    for label, (accepted, ran) in (("Ember, embedded queue", embedded),
                                   ("Ember, Redis queue", redis)):
        ratios = f"accepted {accepted / raw:4.2f} of raw"
        if dramatiq is not None:
            ratios += (f", {accepted / dramatiq['enqueued_per_s']:4.2f} of Dramatiq's enqueue"
                       f"; run {ran / dramatiq['drained_per_s']:4.2f} of Dramatiq's")
        print(f"  {label:<30} {accepted:9.0f} {ran:15.0f}   ({ratios})")


if __name__ == "__main__":
    main()
