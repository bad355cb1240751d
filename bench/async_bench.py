"""Async invocation throughput: events/s accepted (202 after a durable write) and events/s
run end to end for a no-op function, on the embedded queue and on Redis, beside the raw
uvicorn baseline (the same client posting to a bare app) measured in the same run.

    .venv/bin/python bench/async_bench.py [--events 4000] [--redis redis://127.0.0.1:6379/0]
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import io
import shutil
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


def code_zip() -> str:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("main.py", NOOP)
    return base64.b64encode(buf.getvalue()).decode()


async def post_many(url: str, n: int, headers: dict[str, str]) -> tuple[float, list[str]]:
    rate, bodies = await loadgen.run(url, connections=CLIENTS, requests=n, headers=headers)
    ids = [orjson.loads(b)["request_id"] for b in bodies if b.startswith(b'{"request_id"')]
    return rate, ids


def run_backend(label: str, home: Path, events: int, env: dict[str, str], raw: float) -> None:
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
        started = time.perf_counter()
        apikey.post(f"{url}/functions/noop/resume").raise_for_status()
        while True:
            stats = apikey.get(f"{url}/functions/noop/stats").json()
            if stats["queue"]["depth"] == 0:
                break
            time.sleep(0.05)
        elapsed = time.perf_counter() - started
        stats = apikey.get(f"{url}/functions/noop/stats", params={"window_s": 3600}).json()
        print(f"  {label:<9} accepted {accepted:8.0f} events/s ({accepted / raw:4.2f} of raw)   "
              f"run end to end "
              f"{events / elapsed:8.0f} events/s   ({stats['invocations']} invocations, "
              f"{stats['errors']} errors)")
    finally:
        proc.terminate()
        proc.wait()


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
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="ember-async-bench-"))
    try:
        base_proc, base_url = start_baseline()
        try:
            raw, _ = asyncio.run(post_many(base_url, args.events, {}))
        finally:
            base_proc.terminate()
            base_proc.wait()
        print(f"async invocation, {args.events} events from {CLIENTS} concurrent clients")
        print(f"  raw uvicorn POST (same client)        {raw:8.0f} requests/s")
        run_backend("embedded", tmp / "embedded", args.events, {}, raw)
        prefix = f"ember-bench-{uuid.uuid4().hex[:8]}"
        try:
            run_backend("redis", tmp / "redis", args.events,
                        {"EMBER_QUEUE_URL": args.redis, "EMBER_QUEUE_PREFIX": prefix}, raw)
        finally:
            asyncio.run(drop_keys(args.redis, prefix))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
