"""Draining a node: ``POST /nodes/{id}/drain`` (``ember node drain ID``), asked of any node,
takes that node out of service: it claims no more async events, which the other nodes run,
and it is listed ``draining`` and then ``drained`` once no work is left on it."""

from __future__ import annotations

import asyncio
import base64
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from ember.clock import ManualClock
from tests import apicalls as api
from tests.cluster.harness import Cluster, wait_known
from tests.cluster.test_nodes import shared
from tests.conftest import make_zip
from tests.inprocess import Ember, running
from tests.queue.conftest import REDIS_URL, _drop_redis_keys
from tests.router.test_invoke import tick
from tests.waiting import until, wait_until

ECHO = "def handler(event, context):\n    return event\n"


@pytest.fixture
def prefix() -> Iterator[str]:
    made = f"ember-test-{uuid.uuid4().hex[:12]}"
    yield made
    asyncio.run(_drop_redis_keys(made))


def states(listed: dict[str, object]) -> dict[str, str]:
    return {n["id"]: n["state"] for n in listed["nodes"]}  # type: ignore[attr-defined]


def test_a_drained_node_claims_nothing_and_the_others_run_its_events(
    tmp_path: Path, prefix: str,
) -> None:
    clock = ManualClock()
    common = {"queue_url": REDIS_URL, "queue_prefix": prefix, "artifact_store": "database",
              "node_heartbeat_s": 2, "node_dead_s": 10}

    async def main() -> None:
        async with running(shared(tmp_path / "a", tmp_path / "meta.db", **common), clock) as a, \
                running(shared(tmp_path / "b", tmp_path / "meta.db", **common), clock) as b:
            b_id = b.services.nodes.id
            await a.deploy("echo", ECHO)

            # Asked of node A, the drain reaches B at B's next heartbeat.
            drained = await a.http.post(f"/nodes/{b_id}/drain")
            assert drained.status_code == 200, drained.text
            assert not b.services.nodes.draining
            await until(lambda: clock.sleeping() >= 2, message="both heartbeats asleep")
            await tick(clock, 2)
            assert b.services.nodes.draining

            tasks = []
            for n in range(5):
                queued = await b.http.post("/functions/echo/invoke", json={"n": n},
                                           headers={"X-Ember-Invocation-Type": "async"})
                assert queued.status_code == 202, queued.text
                tasks.append(queued.json()["request_id"])
            await b.services.invoker.quiet()  # B looked, and started nothing
            assert b.services.invoker.running_count == 0
            await done(a, tasks)
            now = clock.time()
            for node in (a, b):
                await asyncio.to_thread(node.services.stats.flush)
            assert b.services.stats.stats("echo", now=now)["invocations"] == 0
            assert a.services.stats.stats("echo", now=now)["invocations"] == 5

            # Nothing is left on B: after a heartbeat it is listed drained.
            await tick(clock, 2)
            assert states((await a.http.get("/nodes")).json())[b_id] == "drained"

            back = await a.http.post(f"/nodes/{b_id}/undrain")
            assert back.status_code == 200 and back.json()["state"] == "alive"
            await tick(clock, 2)
            assert not b.services.nodes.draining

    asyncio.run(main())


async def done(ember: Ember, tasks: list[str]) -> None:
    async def all_succeeded() -> bool:
        for task in tasks:
            status = (await ember.http.get(f"/tasks/{task}")).json()["status"]
            assert status != "failed"
            if status != "succeeded":
                return False
        return True

    for _ in range(600):
        if await all_succeeded():
            return
        await ember.services.invoker.quiet()
        await asyncio.sleep(0.05)
    raise AssertionError("the async events did not all succeed")


def test_drain_of_an_unknown_node_says_so_and_needs_an_admin(tmp_path: Path) -> None:
    async def main() -> None:
        async with running(shared(tmp_path / "a"), ManualClock()) as a:
            missing = await a.http.post("/nodes/nowhere-1/drain")
            assert missing.status_code == 404
            assert missing.json()["error"]["code"] == "NodeNotFound"
            bad = await a.http.post("/nodes/Not%20A%20Node/drain")
            assert bad.status_code == 400
            made = await a.http.post("/keys", json={"name": "ops", "role": "developer"})
            token = made.json()["key"]
            refused = await a.http.post(f"/nodes/{a.services.nodes.id}/drain",
                                        headers={"Authorization": f"Bearer {token}"})
            assert refused.status_code == 403
            assert not a.services.nodes.draining
            listed = await a.http.get("/nodes", headers={"Authorization": f"Bearer {token}"})
            assert listed.status_code == 200

    asyncio.run(main())


def test_a_drained_node_hands_its_triggers_over_and_sends_its_invocations_away(
    cluster: Cluster,
) -> None:
    """Real nodes: drained node B gives its trigger leases to A and forwards even the
    invocations it has a warm instance for; once nothing is left it is drained."""
    for name in ("a", "b"):
        cluster.start(name)
    wait_known(cluster, ["a", "b"])
    a, b = cluster["a"].url, cluster["b"].url
    code = {"zip": base64.b64encode(make_zip({"main.py": ECHO})).decode()}
    made = api.post(f"{a}/functions", json={"name": "echo", "code": code}, timeout=30)
    assert made.status_code == 201, made.text
    for n in range(6):  # timers spread over both nodes
        created = api.post(f"{a}/triggers", json={
            "name": f"tick-{n}", "function": "echo",
            "source": {"kind": "timer", "schedule": "rate(1 hour)"}}, timeout=30)
        assert created.status_code == 201, created.text
    warmed = api.post(f"{b}/functions/echo/warm", json={"instances": 1}, timeout=60)
    assert warmed.status_code == 200, warmed.text

    def owners() -> dict[str, str | None]:
        return {t["name"]: t["node"] for t in api.get(f"{a}/triggers").json()["triggers"]}

    wait_until(lambda: None not in owners().values(), timeout=30, interval=0.1,
               message="every timer owned")
    # Asked of B itself, it follows at once (asked through A, at its next heartbeat: the
    # in-process test above checks that path).
    drained = api.post(f"{b}/nodes/b/drain")
    assert drained.status_code == 200 and drained.json()["state"] in ("draining", "drained")
    wait_until(lambda: set(owners().values()) == {"a"}, timeout=30, interval=0.1,
               message="node a owns every timer")
    for _ in range(3):
        answer = api.post(f"{b}/functions/echo/invoke", json="via b", timeout=30)
        assert answer.status_code == 200, answer.text
        assert answer.headers["X-Ember-Node"] == "a"
    wait_until(lambda: any(n["id"] == "b" and n["state"] == "drained"
                           for n in api.get(f"{a}/nodes").json()["nodes"]),
               timeout=30, interval=0.1, message="node b drained")
