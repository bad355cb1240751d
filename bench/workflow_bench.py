"""The workflow engine against the async invocations it is built on, in one run on one
server (embedded queue, SQLite, a no-op function):

- step overhead: a 20-step sequence, each step's time beside one async invocation's end to
  end latency (submit, run, result), sequentially, p50 / p90;
- transitions/s: task instances finished per second while 50 executions of that sequence run
  at once;
- fan-out/fan-in: one fork of 1,000 branches, each calling the function; time and the
  server's memory growth;
- map: a ``for`` over 10,000 items with concurrency 32 beside 10,000 async invocations
  submitted at once.

    .venv/bin/python bench/workflow_bench.py [--items 10000] [--branches 1000]
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).parent))
import apikey
import loadgen
from async_bench import code_zip
from invoke import start_ember

STEPS = 20


def document(name: str, do: list[dict[str, Any]]) -> dict[str, Any]:
    return {"document": {"dsl": "1.0.0", "namespace": "bench", "name": name,
                         "version": "1.0.0"}, "do": do}


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def run_execution(client: httpx.Client, name: str, input: Any = None) -> dict[str, Any]:
    answer = client.post(f"/workflows/{name}/executions", json={"input": input},
                         params={"wait_s": 600}, timeout=700)
    answer.raise_for_status()
    body: dict[str, Any] = answer.json()
    assert body["status"] == "succeeded", body.get("error")
    return body


def when(text: str) -> datetime:
    moment = datetime.fromisoformat(text)
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def seconds(body: dict[str, Any]) -> float:
    start = when(body["created_at"])
    end = when(body["finished_at"])
    return (end - start).total_seconds()


def async_latency(client: httpx.Client, n: int) -> list[float]:
    """One async invocation at a time: milliseconds from accepted to finished, as the
    server recorded them (the client's polling for the result is not counted)."""
    found = []
    for _ in range(n):
        answer = client.post("/functions/noop/invoke", json={"n": 1},
                             headers={"X-Ember-Invocation-Type": "async"})
        answer.raise_for_status()
        task_id = answer.json()["request_id"]
        while True:
            task = client.get(f"/tasks/{task_id}", params={"wait_s": 10}).json()
            if task["status"] in ("succeeded", "failed"):
                break
        found.append((task["finished_at"] - task["created_at"]) * 1000)
    return found


def sync_latency(client: httpx.Client, n: int) -> list[float]:
    """A warm sync invocation's duration inside the server (X-Ember-Duration-Ms excludes
    the client's HTTP round trip, as a step's time does)."""
    found = []
    for _ in range(n):
        started = time.perf_counter()
        client.post("/functions/noop/invoke", json={"n": 1}).raise_for_status()
        found.append((time.perf_counter() - started) * 1000)
    return found


def step_times(client: httpx.Client, runs: int) -> list[float]:
    """Milliseconds per step of a sequence of no-op calls, from each execution's history."""
    found = []
    for _ in range(runs):
        body = client.get(f"/executions/{run_execution(client, 'sequence')['id']}").json()
        ends = [when(step["ended_at"]) for step in body["history"]]
        start = when(body["created_at"])
        for end in ends:
            found.append((end - start).total_seconds() * 1000)
            start = end
    return found


def p(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100)[int(q) - 1] if len(values) > 1 else values[0]


def drain(client: httpx.Client) -> float:
    while True:
        stats = client.get("/functions/noop/stats").json()
        if stats["queue"]["depth"] == 0:
            return time.perf_counter()
        time.sleep(0.02)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--items", type=int, default=10_000)
    parser.add_argument("--branches", type=int, default=1000)
    parser.add_argument("--runs", type=int, default=20)
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="ember-workflow-bench-"))
    proc, url = start_ember(tmp / "home", True)
    try:
        client = httpx.Client(base_url=url, timeout=60, headers=apikey.AUTH)
        client.post("/functions", json={"name": "noop", "code": {"zip": code_zip()},
                                        "config": {"max_instances": 8}}).raise_for_status()
        calls = [{f"s{i}": {"call": "noop", "with": {"n": i}}} for i in range(STEPS)]
        sets = [{f"t{i}": {"set": {"i": i}}} for i in range(STEPS)]
        workflows = {
            "sequence": document("sequence", calls),
            "mixed": document("mixed", [*calls[:10], *sets[:10]]),
            "fanout": document("fanout", [{"all": {"fork": {"branches": [
                {f"b{i}": {"call": "noop", "with": {"n": i}}} for i in range(args.branches)
            ]}}}]),
            "mapper": document("mapper", [{"each": {
                "for": {"each": "item", "in": "${ .items }", "concurrency": 32},
                "do": [{"work": {"call": "noop", "with": {"n": "${ $item }"}}}],
            }}]),
        }
        for name, doc in workflows.items():
            client.put(f"/workflows/{name}", json=doc).raise_for_status()
        # Warm up: instances started, caches filled.
        async_latency(client, 20)
        run_execution(client, "sequence")

        direct = async_latency(client, args.runs * STEPS)
        sync = sync_latency(client, args.runs * STEPS)
        steps = step_times(client, args.runs)
        print(f"sequential steps ({args.runs} executions of {STEPS} no-op calls) beside one "
              "invocation at a time")
        print(f"  sync invocation (client round trip)   p50 {p(sync, 50):6.2f} ms   "
              f"p90 {p(sync, 90):6.2f} ms")
        print(f"  async invocation, queued to finished  p50 {p(direct, 50):6.2f} ms   "
              f"p90 {p(direct, 90):6.2f} ms")
        print(f"  workflow step, end to end             p50 {p(steps, 50):6.2f} ms   "
              f"p90 {p(steps, 90):6.2f} ms   above async {p(steps, 50) - p(direct, 50):+.2f} "
              f"ms, above sync {p(steps, 50) - p(sync, 50):+.2f} ms")

        concurrent = 50

        async def many() -> float:
            async with httpx.AsyncClient(base_url=url, timeout=600, headers=apikey.AUTH) as http:
                started = time.perf_counter()
                answers = await asyncio.gather(*[
                    http.post("/workflows/sequence/executions", json={"input": None},
                              params={"wait_s": 600}) for _ in range(concurrent)])
                elapsed = time.perf_counter() - started
                assert all(a.json()["status"] == "succeeded" for a in answers)
                return elapsed

        elapsed = asyncio.run(many())
        # Each call step is started and finished, and the execution's list advances.
        tasks = concurrent * STEPS
        print(f"  {concurrent} sequences at once: {tasks / elapsed:7.0f} tasks finished/s "
              f"({2 * tasks / elapsed:7.0f} task transitions/s, start and end)")
        mixed = run_execution(client, "mixed")
        print(f"  10 calls then 10 set tasks: {seconds(mixed) * 1000:7.1f} ms")

        before = rss_kib(proc.pid)
        fan = run_execution(client, "fanout")
        after = rss_kib(proc.pid)
        print(f"fork of {args.branches} branches, each a call: {seconds(fan):6.2f} s "
              f"({args.branches / seconds(fan):5.0f} branches/s), server memory "
              f"{before / 1024:.0f} -> {after / 1024:.0f} MiB")

        started = time.perf_counter()
        asyncio.run(loadgen.run(
            f"{url}/functions/noop/invoke", connections=32, requests=args.items,
            headers={"X-Ember-Invocation-Type": "async"}))
        direct_s = drain(client) - started
        mapped = run_execution(client, "mapper", {"items": list(range(args.items))})
        map_s = seconds(mapped)
        print(f"for over {args.items} items, concurrency 32: {map_s:6.2f} s "
              f"({args.items / map_s:6.0f} items/s); {args.items} async invocations: "
              f"{direct_s:6.2f} s ({args.items / direct_s:6.0f}/s); ratio "
              f"{direct_s / map_s:4.2f}")
    finally:
        proc.terminate()
        proc.wait()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
