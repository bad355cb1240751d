"""Several nodes: what forwarding a sync invocation to the node that has the function warm
costs, and async throughput with 1, 2 and 3 nodes consuming one Redis queue.

Every node is a real ``ember server`` on this machine, on one PostgreSQL database made for
the run (dropped after) and one Redis prefix. On a 2-core machine three nodes share the
same two cores: the async figures show that adding nodes costs nothing and loses nothing,
not a speedup — that needs more machines.

    .venv/bin/python bench/cluster_bench.py [--events 3000] [--requests 2000]
        [--postgres postgresql://postgres@127.0.0.1:5432/test] [--redis redis://...]
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import httpx
import sqlalchemy as sa

sys.path.insert(0, str(Path(__file__).parent))
import apikey
import loadgen
from async_bench import code_zip, drop_keys, post_many
from invoke import free_port, start_baseline, wait_up

ROOT = Path(__file__).resolve().parent.parent
EVENT = b'{"n": 1}'


class Nodes:
    def __init__(self, tmp: Path, database_url: str, redis_url: str, prefix: str) -> None:
        self.tmp = tmp
        self.env = {
            "EMBER_DATABASE_URL": database_url, "EMBER_QUEUE_URL": redis_url,
            "EMBER_QUEUE_PREFIX": prefix,
            "EMBER_MASTER_KEY": base64.b64encode(os.urandom(32)).decode(),
            "EMBER_NODE_HEARTBEAT_S": "0.5", "EMBER_NODE_DEAD_S": "3",
            "EMBER_LOG_LEVEL": "warning", "EMBER_QUEUE_DEPTH": "1000",
            "EMBER_ADMIN_KEY": apikey.KEY,
        }
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.urls: dict[str, str] = {}

    def start(self, name: str) -> str:
        port = free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith("EMBER_")}
        env |= self.env | {"EMBER_HOME": str(self.tmp / name), "EMBER_NODE_ID": name}
        proc = subprocess.Popen([str(ROOT / ".venv/bin/ember"), "server", "--port", str(port)],
                                env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        url = f"http://127.0.0.1:{port}"
        wait_up(url + "/healthz", proc)
        self.procs[name], self.urls[name] = proc, url
        return url

    def wait_all_alive(self) -> None:
        names = set(self.urls)
        for url in self.urls.values():
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                nodes = apikey.get(f"{url}/nodes").json()["nodes"]
                if names <= {n["id"] for n in nodes if n["state"] == "alive"}:
                    break
                time.sleep(0.1)
        time.sleep(1.0)  # one more heartbeat: each node's snapshot holds the others

    def stop(self) -> None:
        for proc in self.procs.values():
            proc.terminate()
        for proc in self.procs.values():
            proc.wait()
        self.procs.clear()
        self.urls.clear()


def latencies(url: str, n: int) -> tuple[list[float], set[str]]:
    samples, ran_on = [], set()
    with httpx.Client(headers=apikey.AUTH) as client:
        for _ in range(min(50, n)):
            client.post(url, content=EVENT)
        for _ in range(n):
            started = time.perf_counter()
            answer = client.post(url, content=EVENT)
            samples.append((time.perf_counter() - started) * 1000)
            answer.raise_for_status()
            ran_on.add(answer.headers["x-ember-node"])
    return samples, ran_on


def p(samples: list[float], q: float) -> float:
    return statistics.quantiles(samples, n=100)[int(q) - 1]


def sync_forwarding(nodes: Nodes, requests: int) -> None:
    a, b = nodes.start("a"), nodes.start("b")
    nodes.wait_all_alive()
    apikey.post(f"{a}/functions", json={"name": "noop", "code": {"zip": code_zip()},
                                        "config": {"max_instances": 4}}).raise_for_status()
    # Warm on A; B learns it from A's heartbeat and forwards there.
    apikey.post(f"{a}/functions/noop/invoke", content=EVENT).raise_for_status()
    time.sleep(1.5)
    local, on_local = latencies(f"{a}/functions/noop/invoke", requests)
    forwarded, on_forwarded = latencies(f"{b}/functions/noop/invoke", requests)
    assert on_local == {"a"} and on_forwarded == {"a"}, (on_local, on_forwarded)
    rate_local, _ = asyncio.run(loadgen.run(f"{a}/functions/noop/invoke", connections=16,
                                            requests=requests * 2, headers=apikey.AUTH))
    rate_forwarded, _ = asyncio.run(loadgen.run(f"{b}/functions/noop/invoke", connections=16,
                                                requests=requests * 2, headers=apikey.AUTH))
    base_proc, base_url = start_baseline()
    try:
        raw, _ = asyncio.run(loadgen.run(base_url, connections=16, requests=requests * 2))
    finally:
        base_proc.terminate()
        base_proc.wait()
    print(f"sync invocation of a warm no-op, {requests} sequential requests, then "
          f"{requests * 2} from 16 clients")
    print(f"  through the node that runs it   p50 {p(local, 50):6.2f} ms  p99 "
          f"{p(local, 99):6.2f} ms   {rate_local:7.0f} req/s ({rate_local / raw:4.2f} of raw)")
    print(f"  forwarded by a second node      p50 {p(forwarded, 50):6.2f} ms  p99 "
          f"{p(forwarded, 99):6.2f} ms   {rate_forwarded:7.0f} req/s "
          f"({rate_forwarded / raw:4.2f} of raw)")
    print(f"  forwarding overhead p50 {p(forwarded, 50) - p(local, 50):+.2f} ms; "
          f"raw uvicorn {raw:.0f} req/s in the same run")
    nodes.stop()


def async_throughput(nodes: Nodes, events: int, count: int) -> None:
    names = ["a", "b", "c"][:count]
    for name in names:
        nodes.start(name)
    nodes.wait_all_alive()
    first = nodes.urls["a"]
    name = f"noop{count}"
    apikey.post(f"{first}/functions", json={"name": name, "code": {"zip": code_zip()},
                                            "config": {"max_instances": 8}}).raise_for_status()
    for url in nodes.urls.values():
        apikey.post(f"{url}/functions/{name}/pause").raise_for_status()
    _, ids = asyncio.run(post_many(f"{first}/functions/{name}/invoke", events,
                                   {"X-Ember-Invocation-Type": "async"}))
    assert len(set(ids)) == events
    started = time.perf_counter()
    for url in nodes.urls.values():
        apikey.post(f"{url}/functions/{name}/resume").raise_for_status()
    while apikey.get(f"{first}/functions/{name}/stats").json()["queue"]["depth"]:
        time.sleep(0.05)
    elapsed = time.perf_counter() - started
    stats = apikey.get(f"{first}/functions/{name}/stats", params={"window_s": 3600}).json()
    print(f"  {count} node{'s' if count > 1 else ' '}  run end to end {events / elapsed:7.0f} "
          f"events/s   ({stats['invocations']} invocations, {stats['errors']} errors, "
          f"nodes {','.join(stats.get('nodes', ['?']))})")
    nodes.stop()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=3000)
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--postgres", default=os.environ.get(
        "EMBER_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test"))
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/0")
    args = parser.parse_args()
    admin_url = sa.make_url(args.postgres).set(drivername="postgresql+psycopg")
    admin = sa.create_engine(admin_url, isolation_level="AUTOCOMMIT")
    database = f"ember_bench_{uuid.uuid4().hex[:8]}"
    with admin.connect() as conn:
        conn.exec_driver_sql(f'CREATE DATABASE "{database}"')
    url = admin_url.set(database=database).render_as_string(hide_password=False)
    prefix = f"ember-bench-{uuid.uuid4().hex[:8]}"
    tmp = Path(tempfile.mkdtemp(prefix="ember-cluster-bench-"))
    nodes = Nodes(tmp, url, args.redis, prefix)
    try:
        sync_forwarding(nodes, args.requests)
        print(f"async invocation, {args.events} events queued then run (one Redis queue; "
              "2 cores shared by every node: correctness and overhead, not speedup)")
        for count in (1, 2, 3):
            async_throughput(nodes, args.events, count)
    finally:
        nodes.stop()
        shutil.rmtree(tmp, ignore_errors=True)
        asyncio.run(drop_keys(args.redis, prefix))
        with admin.connect() as conn:
            conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
        admin.dispose()


if __name__ == "__main__":
    main()
