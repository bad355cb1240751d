"""Trigger ownership across real ``ember server`` processes on one PostgreSQL and one Redis:
a pulling trigger runs on one node (each MQTT message runs once, a timer fires once per
tick), every node names the same owner, and the triggers of a node killed with ``kill -9``
run on another node within 15 s — an ordered Redis stream going on from the batch the dead
node was running, in order.

Until trigger changes reach every node, a node learns of the triggers that exist when it
starts: each test creates its trigger on node ``a`` before starting the others. Functions
write one file per run into a directory of the test's (``OUT``), so a run twice is seen."""

from __future__ import annotations

import asyncio
import base64
import json
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiomqtt
import pytest
import redis

from ember.cluster.nodes import preferred
from tests import apicalls as api
from tests.cluster.harness import REDIS_URL, Cluster, wait_alive
from tests.conftest import make_zip
from tests.waiting import wait_until

MQTT_HOST, MQTT_PORT = "127.0.0.1", 1883
# Functions reading and writing the test's files run without the sandbox.
NODE = {"sandbox": "process"}

# One file per run: the message's number (MQTT), the tick (timer), with a unique suffix.
RECORD = """import json, os, uuid
def handler(event, context):
    data = event.get("data")
    key = str(data["n"]) if isinstance(data, dict) and "n" in data else event["id"]
    name = key.replace("/", "_").replace(":", "_") + "." + uuid.uuid4().hex
    open(os.path.join(os.environ["OUT"], name), "x").close()
    return key
"""

# An ordered Redis stream's batches: each record's number appended to one log, in the order
# delivered; the batch holding a record with gate=1 then waits for the file `gate`.
ORDERED = """import os, time
def handler(event, context):
    out = os.environ["OUT"]
    records = event["data"]["records"]
    with open(os.path.join(out, "log"), "a") as log:
        log.write("".join(r["fields"]["n"] + "\\n" for r in records))
    if any(r["fields"].get("gate") == "1" for r in records):
        open(os.path.join(out, "entered"), "a").close()
        deadline = time.monotonic() + 120
        while not os.path.exists(os.path.join(out, "gate")) and time.monotonic() < deadline:
            time.sleep(0.05)
    return len(records)
"""


def deploy(url: str, name: str, source: str, out: Path) -> None:
    code = {"zip": base64.b64encode(make_zip({"main.py": source})).decode()}
    config = {"environment": {"OUT": str(out)}, "timeout_s": 180}
    answer = api.post(f"{url}/functions", json={"name": name, "config": config, "code": code},
                      timeout=60)
    assert answer.status_code == 201, answer.text


def create_trigger(url: str, name: str, function: str, source: dict[str, Any]) -> None:
    answer = api.post(f"{url}/triggers", json={"name": name, "function": function,
                                               "source": source}, timeout=30)
    assert answer.status_code == 201, answer.text


def trigger(cluster: Cluster, on: str, name: str) -> dict[str, Any]:
    answer = api.get(f"{cluster[on].url}/triggers/{name}", timeout=10)
    assert answer.status_code == 200, answer.text
    found: dict[str, Any] = answer.json()
    return found


def settled(cluster: Cluster, name: str, nodes: list[str]) -> str:
    """Until every node of ``nodes`` names the node preferred among them as the owner of
    trigger ``name``, and its source there is connected; that node."""
    owner = preferred(name, nodes)
    assert owner is not None

    def agreed() -> bool:
        return (all(trigger(cluster, on, name)["node"] == owner for on in nodes)
                and bool(trigger(cluster, owner, name)["status"]["connected"]))

    wait_until(agreed, timeout=60, interval=0.1,
               message=f"every node names {owner} the owner of {name}")
    return owner


def runs(out: Path) -> Counter[str]:
    """How many times each key ran."""
    return Counter(path.name.rsplit(".", 1)[0] for path in out.iterdir())


def publish(topic: str, numbers: range) -> None:
    async def send() -> None:
        async with aiomqtt.Client(MQTT_HOST, MQTT_PORT,
                                  protocol=aiomqtt.ProtocolVersion.V5) as client:
            for n in numbers:
                await client.publish(topic, json.dumps({"n": n}), qos=1)

    asyncio.run(send())


@pytest.fixture
def mqtt_trigger() -> Iterator[tuple[str, str]]:
    """A trigger name and its topic filter; its persistent session is ended after."""
    from tests.triggers.test_mqtt import drop_session

    name = f"own-mqtt-{uuid.uuid4().hex[:8]}"
    topic = f"ember-test/{name}/#"
    yield name, topic
    asyncio.run(drop_session(name, topic))


def start_mqtt_cluster(cluster: Cluster, tmp_path: Path, name: str, topic: str) -> Path:
    """Nodes a, b, c with an MQTT trigger of function ``record`` made on a first."""
    out = tmp_path / "runs"
    out.mkdir()
    cluster.start("a", **NODE)
    deploy(cluster["a"].url, "record", RECORD, out)
    create_trigger(cluster["a"].url, name, "record",
                   {"kind": "mqtt", "url": f"mqtt://{MQTT_HOST}:{MQTT_PORT}", "topic": topic})
    for node in ("b", "c"):
        cluster.start(node, **NODE)
    wait_alive(cluster, ["a", "b", "c"], on="a")
    return out


def events(cluster: Cluster, name: str, nodes: list[str]) -> int:
    """Events the trigger's sources took, on every node together."""
    return sum(int(trigger(cluster, on, name)["status"]["events"]) for on in nodes)


def test_each_mqtt_message_runs_once_on_three_nodes(
    cluster: Cluster, tmp_path: Path, mqtt_trigger: tuple[str, str],
) -> None:
    name, topic = mqtt_trigger
    out = start_mqtt_cluster(cluster, tmp_path, name, topic)
    nodes = ["a", "b", "c"]
    owner = settled(cluster, name, nodes)
    before = events(cluster, name, nodes)

    publish(topic.replace("#", "m"), range(30))
    wait_until(lambda: len(runs(out)) == 30, timeout=90, interval=0.1,
               message="all 30 messages ran")
    wait_until(lambda: events(cluster, name, nodes) - before >= 30, timeout=30, interval=0.1,
               message="30 events counted")

    assert runs(out) == Counter({str(n): 1 for n in range(30)}), cluster.logs()
    assert events(cluster, name, nodes) - before == 30  # taken by one source, once each
    for on in nodes:
        assert trigger(cluster, on, name)["node"] == owner


def test_a_timer_fires_once_per_tick_on_three_nodes(cluster: Cluster, tmp_path: Path) -> None:
    out = tmp_path / "ticks"
    out.mkdir()
    name = f"own-tick-{uuid.uuid4().hex[:8]}"
    nodes = ["a", "b", "c"]
    cluster.start("a", **NODE)
    deploy(cluster["a"].url, "record", RECORD, out)
    create_trigger(cluster["a"].url, name, "record",
                   {"kind": "timer", "schedule": "rate(1 second)"})
    for node in ("b", "c"):
        cluster.start(node, **NODE)
    wait_alive(cluster, nodes, on="a")
    settled(cluster, name, nodes)
    seen = len(runs(out))
    wait_until(lambda: len(runs(out)) >= seen + 5, timeout=60, interval=0.1,
               message="five more ticks ran")

    # Disabled on every node (each then stops it, and releases its lease if it held it).
    for on in nodes:
        answer = api.post(f"{cluster[on].url}/triggers/{name}/disable", timeout=30)
        assert answer.status_code == 200, answer.text
    wait_until(lambda: all(trigger(cluster, on, name)["node"] is None for on in nodes),
               timeout=30, interval=0.1, message="no node holds the timer")

    # Every tick any node fired is one event on that node; each ran once.
    fired = events(cluster, name, nodes)
    dropped = sum(int(trigger(cluster, on, name)["status"]["dropped"]) for on in nodes)
    assert dropped == 0
    wait_until(lambda: len(runs(out)) >= fired, timeout=60, interval=0.1,
               message=f"the {fired} ticks fired ran")
    ticks = runs(out)
    assert len(ticks) == fired, (ticks, fired, cluster.logs())
    assert set(ticks.values()) == {1}, ticks


def test_a_killed_owner_s_mqtt_trigger_moves_within_15_s_and_runs_each_message_once(
    cluster: Cluster, tmp_path: Path, mqtt_trigger: tuple[str, str],
) -> None:
    name, topic = mqtt_trigger
    out = start_mqtt_cluster(cluster, tmp_path, name, topic)
    nodes = ["a", "b", "c"]
    owner = settled(cluster, name, nodes)
    survivors = [node for node in nodes if node != owner]

    cluster.kill(owner)
    killed_at = time.monotonic()

    def taken_over() -> bool:
        return all(trigger(cluster, on, name)["node"] in survivors for on in survivors)

    wait_until(taken_over, timeout=60, interval=0.05, message=f"{name} left {owner}")
    took = time.monotonic() - killed_at
    print(f"\ntrigger {name}: owner {owner} killed; running on "
          f"{trigger(cluster, survivors[0], name)['node']} {took:.2f} s later")
    assert took < 15, f"the takeover took {took:.1f} s"

    # Once the survivors see the killed node dead, the trigger rests on the one preferred.
    settled(cluster, name, survivors)
    publish(topic.replace("#", "after"), range(100, 120))
    wait_until(lambda: len(runs(out)) == 20, timeout=90, interval=0.1,
               message="the 20 messages published after the kill ran")
    assert runs(out) == Counter({str(n): 1 for n in range(100, 120)}), cluster.logs()


def test_an_ordered_stream_resumes_in_order_after_its_owner_is_killed_mid_batch(
    cluster: Cluster, tmp_path: Path,
) -> None:
    out = tmp_path / "stream"
    out.mkdir()
    stream = f"ember-test-own-{uuid.uuid4().hex[:8]}"
    name = f"own-stream-{uuid.uuid4().hex[:8]}"
    client = redis.Redis.from_url(REDIS_URL)
    try:
        cluster.start("a", **NODE)
        deploy(cluster["a"].url, "ordered", ORDERED, out)
        create_trigger(cluster["a"].url, name, "ordered",
                       {"kind": "redis_stream", "url": REDIS_URL, "streams": [stream],
                        "batch_size": 5})
        cluster.start("b", **NODE)
        wait_alive(cluster, ["a", "b"], on="a")
        owner = settled(cluster, name, ["a", "b"])
        survivor = "b" if owner == "a" else "a"

        # All at once (one transaction): batches of five, 11-15 stopping at the gate.
        with client.pipeline(transaction=True) as pipe:
            for n in range(1, 31):
                pipe.xadd(stream, {"n": str(n), **({"gate": "1"} if n == 13 else {})})
            pipe.execute()
        wait_until(lambda: (out / "entered").exists(), timeout=60, interval=0.05,
                   message="the batch holding the gate running")
        cluster.kill(owner)  # mid-batch: 11-15 delivered, not acknowledged
        (out / "gate").touch()

        def logged() -> list[int]:
            path = out / "log"
            return [int(n) for n in path.read_text().split()] if path.exists() else []

        wait_until(lambda: 30 in logged(), timeout=90, interval=0.1,
                   message=f"record 30 delivered by {survivor}")
        seen = logged()
        duplicates = len(seen) - len(set(seen))
        print(f"\nstream {stream}: {len(seen)} deliveries of 30 records, {duplicates} "
              f"delivered twice (the batch {owner} was killed in)")
        # The unacknowledged batch again, first, then the rest: in order, nothing lost.
        assert seen == [*range(1, 16), *range(11, 16), *range(16, 31)], seen
        assert trigger(cluster, survivor, name)["node"] == survivor
    finally:
        client.delete(stream)
        client.close()
