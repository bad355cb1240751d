"""Async invocation end to end in one process, on the embedded queue and on Redis: the API
accepts, the worker runs through the router, outcomes land in tasks, destinations and dead
letters."""

from __future__ import annotations

import asyncio
import base64
import itertools
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from ember.clock import ManualClock
from ember.cluster.slots import RedisSlots, SlotsTaken
from ember.pool.pool import pool_key_text
from tests.conftest import HOST_FILES
from tests.inprocess import Ember

Run = Callable[..., None]

ECHO = """
def handler(event, context):
    return {"event": event, "attempt": context.attempt}
"""

FLAKY = """
import os

def handler(event, context):
    # Fails until the attempt named in the event.
    if context.attempt < event["succeed_on"]:
        raise RuntimeError(f"attempt {context.attempt} fails")
    return context.attempt
"""


@pytest.fixture
def run_async(run_on_queue: Run) -> Run:
    return run_on_queue


async def submit(ember: Ember, name: str, event: Any = None, *, key: str | None = None,
                 qualifier: str | None = None) -> dict[str, Any]:
    headers = {"X-Ember-Invocation-Type": "async"}
    if key:
        headers["X-Ember-Idempotency-Key"] = key
    params = {"qualifier": qualifier} if qualifier else {}
    answer = await ember.http.post(f"/functions/{name}/invoke", json=event, headers=headers,
                                   params=params)
    assert answer.status_code == 202, answer.text
    assert answer.headers["x-ember-request-id"] == answer.json()["request_id"]
    return dict(answer.json())


async def wait(ember: Ember, task_id: str, timeout: float = 60) -> dict[str, Any]:
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        task = (await ember.http.get(f"/tasks/{task_id}", params={"wait_s": 1})).json()
        if task["status"] in ("succeeded", "failed", "stopped", "expired"):
            return dict(task)
        assert asyncio.get_running_loop().time() < deadline, task
        await asyncio.sleep(0.01)


async def wait_for_state(ember: Ember, task_id: str, ready: Callable[[dict[str, Any]], bool],
                         timeout: float = 60) -> dict[str, Any]:
    """The task once ``ready`` holds for it."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        task = dict((await ember.http.get(f"/tasks/{task_id}")).json())
        if ready(task):
            return task
        assert asyncio.get_running_loop().time() < deadline, task
        await asyncio.sleep(0.01)


def test_async_invoke_runs_and_records_the_task(run_async: Run) -> None:
    async def scenario(ember: Ember) -> None:
        await ember.deploy("echo", ECHO)
        accepted = await submit(ember, "echo", {"n": 1})
        assert accepted["deduplicated"] is False
        assert accepted["task"]["status"] in ("queued", "running")
        task = await wait(ember, accepted["request_id"])
        assert task["status"] == "succeeded"
        assert task["result"] == {"value": {"event": {"n": 1}, "attempt": 1}}
        assert task["attempts"] == 1 and task["history"][0]["outcome"] == "success"
        assert task["version"] == "latest"
        listed = (await ember.http.get("/functions/echo/tasks")).json()["tasks"]
        assert [t["id"] for t in listed] == [task["id"]]
        by_status = await ember.http.get("/functions/echo/tasks", params={"status": "failed"})
        assert by_status.json()["tasks"] == []
        logs = (await ember.http.get(task["logs"])).json()
        assert logs["logs"] == []  # echo logs nothing, but the link works

    run_async(scenario)


def test_idempotency_key_deduplicates(run_async: Run) -> None:
    async def scenario(ember: Ember) -> None:
        await ember.deploy("echo", ECHO)
        first = await submit(ember, "echo", {"n": 1}, key="order-42")
        again = await submit(ember, "echo", {"n": 2}, key="order-42")
        assert again["request_id"] == first["request_id"] and again["deduplicated"] is True
        other = await submit(ember, "echo", {"n": 3}, key="order-43")
        assert other["request_id"] != first["request_id"]
        await wait(ember, first["request_id"])
        await wait(ember, other["request_id"])
        tasks = (await ember.http.get("/functions/echo/tasks")).json()["tasks"]
        assert len(tasks) == 2

    run_async(scenario)


def test_function_errors_are_retried_then_dead_lettered_and_redriven(run_async: Run) -> None:
    async def scenario(ember: Ember) -> None:
        await ember.deploy("flaky", FLAKY, **{"async": {"max_retries": 2}})
        ok = await wait(ember, (await submit(ember, "flaky", {"succeed_on": 3}))["request_id"])
        assert ok["status"] == "succeeded" and ok["attempts"] == 3
        assert [a["outcome"] for a in ok["history"]] == ["error", "error", "success"]
        history = ok["history"]
        gaps = [b["started_at"] - a["finished_at"] for a, b in itertools.pairwise(history)]
        assert gaps[0] >= 0.04 and gaps[1] >= 0.09  # 0.05 s, then doubled

        failed = await wait(ember, (await submit(ember, "flaky", {"succeed_on": 9}))["request_id"])
        assert failed["status"] == "failed" and failed["attempts"] == 3
        assert failed["error"]["code"] == "FunctionError"
        assert failed["dead_lettered"] is True
        letters = (await ember.http.get("/dead-letters", params={"function": "flaky"})).json()
        assert [d["id"] for d in letters["dead_letters"]] == [failed["id"]]
        letter = (await ember.http.get(f"/dead-letters/{failed['id']}")).json()
        assert letter["payload"] == {"value": {"succeed_on": 9}}
        assert letter["reason"]["condition"] == "RetriesExhausted"
        assert letter["reason"]["attempts"] == 3

        await ember.update_code("flaky", FLAKY.replace("event[\"succeed_on\"]", "1"))
        redriven = await ember.http.post(f"/dead-letters/{failed['id']}/redrive")
        assert redriven.status_code == 200 and redriven.json()["status"] == "queued"
        done = await wait(ember, failed["id"])
        assert done["status"] == "succeeded"
        assert (await ember.http.get(f"/dead-letters/{failed['id']}")).status_code == 404
        stats = (await ember.http.get("/functions/flaky/stats")).json()
        assert stats["retries"] >= 4
        assert stats["queue"]["dead_letters"] == 0

    run_async(scenario)


def test_destinations_receive_outcomes(run_async: Run) -> None:
    sink = """
import json, os

def handler(event, context):
    with open(os.environ["OUT"], "a") as f:
        f.write(json.dumps(event) + "\\n")
    return "noted"
"""

    async def scenario(ember: Ember) -> None:
        import json
        import tempfile

        out = tempfile.mktemp(prefix="ember-dest-")
        await ember.deploy("sink", sink, environment={"OUT": out})
        destinations = {
            "max_retries": 0,
            "on_success": {"function": "sink"},
            "on_failure": {"function": "sink"},
        }
        await ember.deploy("flaky", FLAKY, **{"async": destinations})
        good = await submit(ember, "flaky", {"succeed_on": 1})
        bad = await submit(ember, "flaky", {"succeed_on": 5})
        assert (await wait(ember, good["request_id"]))["status"] == "succeeded"
        failed = await wait(ember, bad["request_id"])
        assert failed["status"] == "failed" and failed["dead_lettered"] is False
        for _ in range(400):
            try:
                with open(out) as f:
                    records = [json.loads(line) for line in f]
            except FileNotFoundError:
                records = []
            if len(records) == 2:
                break
            await asyncio.sleep(0.025)
        by_id = {r["request_id"]: r for r in records}
        success = by_id[good["request_id"]]
        assert success["condition"] == "Success"
        assert success["response"]["result"] == 1
        assert success["request"]["payload"] == {"succeed_on": 1}
        failure = by_id[bad["request_id"]]
        assert failure["condition"] == "RetriesExhausted"
        assert failure["response"]["error"]["code"] == "FunctionError"
        assert failure["attempts"][0]["outcome"] == "error"

    # The sink writes to a file of the test's: no sandbox.
    run_async(scenario, **HOST_FILES)


def test_max_event_age_expires_events(run_async: Run) -> None:
    clock = ManualClock()

    async def scenario(ember: Ember) -> None:
        await ember.deploy("old", ECHO, **{"async": {"max_event_age_s": 1}})
        await ember.http.post("/functions/old/pause")
        accepted = await submit(ember, "old", {"n": 1})
        clock.advance(1.5)
        await ember.http.post("/functions/old/resume")
        task = await wait(ember, accepted["request_id"])
        assert task["status"] == "expired"
        assert task["attempts"] == 0
        letter = (await ember.http.get(f"/dead-letters/{task['id']}")).json()
        assert letter["reason"]["condition"] == "EventAgeExceeded"

    run_async(scenario, clock=clock)


def test_system_errors_are_retried(run_async: Run) -> None:
    async def scenario(ember: Ember) -> None:
        await ember.deploy("echo", ECHO, **{"async": {"max_retries": 0}})
        await ember.http.post("/functions/echo/disable")
        await ember.settle()
        accepted = await submit(ember, "echo", {"n": 1})
        task = await wait_for_state(ember, accepted["request_id"],
                                    lambda t: len(t["history"]) >= 2)
        # max_retries counts function errors only: a disabled function is the platform's.
        assert task["status"] in ("queued", "running")
        assert {a["outcome"] for a in task["history"]} == {"system_error"}
        assert task["history"][0]["error_code"] == "FunctionDisabled"
        await ember.http.post("/functions/echo/enable")
        done = await wait(ember, accepted["request_id"])
        assert done["status"] == "succeeded"
        assert done["result"]["value"]["attempt"] == done["attempts"] >= 3

    run_async(scenario)


CRASHER = """
import os

def handler(event, context):
    if context.attempt <= event["crashes"]:
        os._exit(1)
    return context.attempt
"""


def test_a_crash_the_event_causes_counts_against_max_retries(run_async: Run) -> None:
    async def scenario(ember: Ember) -> None:
        await ember.deploy("crashy", CRASHER, **{"async": {"max_retries": 2}})
        failed = await wait(ember, (await submit(ember, "crashy", {"crashes": 99}))["request_id"])
        assert failed["status"] == "failed" and failed["dead_lettered"] is True
        assert failed["attempts"] == 3
        assert [(a["outcome"], a["error_code"]) for a in failed["history"]] == [
            ("error", "InstanceCrashed")] * 3
        letter = (await ember.http.get(f"/dead-letters/{failed['id']}")).json()
        assert letter["reason"]["condition"] == "RetriesExhausted"
        assert letter["reason"]["code"] == "InstanceCrashed"

        # Within max_retries, a crash is retried like any function error.
        ok = await wait(ember, (await submit(ember, "crashy", {"crashes": 1}))["request_id"])
        assert ok["status"] == "succeeded" and ok["result"] == {"value": 2}
        assert [a["outcome"] for a in ok["history"]] == ["error", "success"]

    run_async(scenario)


OVERLAP = """
import os, time, uuid

def handler(event, context):
    # A marker file while it runs; every run writes down how many it saw, itself included.
    runs = os.environ["RUNS"]
    marker = os.path.join(runs, "running-" + uuid.uuid4().hex)
    open(marker, "w").close()
    seen = sum(name.startswith("running-") for name in os.listdir(runs))
    with open(os.path.join(runs, "seen"), "a") as f:
        f.write(f"{seen}\\n")
    time.sleep(0.2)  # a window for others to start in, were they allowed to
    os.remove(marker)
    return seen
"""


def test_max_concurrency_bounds_the_events_running_at_once(run_async: Run,
                                                            tmp_path: Path) -> None:
    async def scenario(ember: Ember) -> None:
        await ember.deploy("capped", OVERLAP, environment={"RUNS": str(tmp_path)},
                           **{"async": {"max_concurrency": 2}})
        # Queued while paused, so that one claim could take all six at once.
        await ember.http.post("/functions/capped/pause")
        await ember.settle()
        ids = [(await submit(ember, "capped", {"i": i}))["request_id"] for i in range(6)]
        await ember.http.post("/functions/capped/resume")
        for task_id in ids:
            assert (await wait(ember, task_id))["status"] == "succeeded"
        seen = [int(n) for n in (tmp_path / "seen").read_text().split()]
        assert len(seen) == 6
        assert max(seen) <= 2, seen

    run_async(scenario, **HOST_FILES)


def test_deleting_a_function_drops_its_events_tasks_and_dead_letters(run_async: Run) -> None:
    async def scenario(ember: Ember) -> None:
        await ember.deploy("gone", FLAKY, **{"async": {"max_retries": 0}})
        done = await wait(ember, (await submit(ember, "gone", {"succeed_on": 1}))["request_id"])
        dead = await wait(ember, (await submit(ember, "gone", {"succeed_on": 2}))["request_id"])
        assert (done["status"], dead["dead_lettered"]) == ("succeeded", True)
        await ember.http.post("/functions/gone/pause")
        await ember.settle()
        queued = [(await submit(ember, "gone", {"succeed_on": 1}))["request_id"]
                  for _ in range(3)]
        await ember.deploy("kept", ECHO)
        other = await wait(ember, (await submit(ember, "kept", {"n": 1}))["request_id"])

        assert (await ember.http.delete("/functions/gone")).status_code == 200
        # Gone by the time the deletion is answered.
        for task_id in [done["id"], dead["id"], *queued]:
            answer = await ember.http.get(f"/tasks/{task_id}")
            assert answer.status_code == 404, answer.text
        assert (await ember.http.get(f"/dead-letters/{dead['id']}")).status_code == 404
        letters = await ember.http.get("/dead-letters", params={"function": "gone"})
        assert letters.json()["dead_letters"] == []
        figures = await ember.services.invoker.queue.figures("gone", now=time.time())
        assert (figures.depth, figures.dead_letters) == (0, 0)
        # A function re-created under the name starts with nothing queued.
        await ember.deploy("gone", ECHO)
        assert (await ember.http.get("/functions/gone/tasks")).json()["tasks"] == []
        # Other functions keep theirs.
        assert (await ember.http.get(f"/tasks/{other['id']}")).json()["status"] == "succeeded"

    run_async(scenario)


def test_finished_tasks_and_dead_letters_are_purged_after_the_retention(
        run_async: Run) -> None:
    clock = ManualClock()

    async def scenario(ember: Ember) -> None:
        await ember.deploy("flaky", FLAKY, **{"async": {"max_retries": 0}})
        old = await wait(ember, (await submit(ember, "flaky", {"succeed_on": 1}))["request_id"])
        dead = await wait(ember, (await submit(ember, "flaky", {"succeed_on": 2}))["request_id"])
        assert dead["dead_lettered"] is True
        clock.advance(3601)  # the hourly purge runs: nothing is 5,000 s old yet
        recent = await wait(ember, (await submit(ember, "flaky", {"succeed_on": 1}))["request_id"])
        for task in (old, dead):
            assert (await ember.http.get(f"/tasks/{task['id']}")).status_code == 200
        clock.advance(3600)  # the next purge: old and dead are 7,200 s old, recent 3,600 s
        await wait_for_state(ember, old["id"],
                             lambda t: (t.get("error") or {}).get("code") == "TaskNotFound")
        assert (await ember.http.get(f"/tasks/{dead['id']}")).status_code == 404
        assert (await ember.http.get(f"/dead-letters/{dead['id']}")).status_code == 404
        tasks = (await ember.http.get("/functions/flaky/tasks")).json()["tasks"]
        assert [t["id"] for t in tasks] == [recent["id"]]

    run_async(scenario, clock=clock, task_retention_s=5000)


def test_the_heartbeat_keeps_a_long_attempt_on_the_injected_clock(run_async: Run,
                                                                 tmp_path: Path) -> None:
    clock = ManualClock()
    gated = """
import os, time

def handler(event, context):
    open(event["started"], "w").close()
    while not os.path.exists(event["gate"]):
        time.sleep(0.005)
    return context.attempt
"""
    gate, started = tmp_path / "gate", tmp_path / "started"

    async def scenario(ember: Ember) -> None:
        queue = ember.services.invoker.queue
        await ember.deploy("long", gated, timeout_s=600)  # real time passes too
        accepted = await submit(ember, "long", {"gate": str(gate), "started": str(started)})
        while not started.exists():
            await asyncio.sleep(0.005)
        # Ten leases of 3 s go by on the clock, a second at a time: each time the heartbeat
        # wakes on the clock and pushes the lease to now + 3, so it never runs out.
        for _ in range(30):
            clock.advance(1)
            while (await queue.figures("long", now=clock.time() + 2.5)).leased == 0:
                await asyncio.sleep(0.005)
        await ember.services.invoker.quiet()  # the worker looked: nothing to redeliver
        gate.touch()
        task = await wait(ember, accepted["request_id"])
        assert task["status"] == "succeeded" and task["result"] == {"value": 1}
        assert [a["outcome"] for a in task["history"]] == ["success"]

    run_async(scenario, clock=clock, async_lease_s=3, **HOST_FILES)


def test_pause_keeps_events_queued_until_resume(run_async: Run) -> None:
    clock = ManualClock()

    async def scenario(ember: Ember) -> None:
        await ember.deploy("echo", ECHO)
        paused = await ember.http.post("/functions/echo/pause")
        assert paused.json()["async_state"] == "paused"
        ids = [(await submit(ember, "echo", {"n": i}))["request_id"] for i in range(3)]
        clock.advance(0.5)
        await ember.services.invoker.quiet()  # the worker looked since, and left them
        for task_id in ids:
            assert (await ember.http.get(f"/tasks/{task_id}")).json()["status"] == "queued"
        stats = (await ember.http.get("/functions/echo/stats")).json()
        assert stats["queue"]["depth"] == 3
        assert stats["queue"]["oldest_age_s"] == pytest.approx(0.5)
        metrics = (await ember.http.get("/metrics")).text
        node = ember.services.nodes.id
        assert f'ember_queue_depth{{function="echo",node="{node}"}} 3.0' in metrics
        assert f'ember_queue_oldest_age_seconds{{function="echo",node="{node}"}}' in metrics
        resumed = await ember.http.post("/functions/echo/resume")
        assert resumed.json()["async_state"] == "running"
        for task_id in ids:
            assert (await wait(ember, task_id))["status"] == "succeeded"

    run_async(scenario, clock=clock)


def test_stop_queued_and_running_tasks(run_async: Run) -> None:
    slow = """
import time

def handler(event, context):
    time.sleep(event["sleep"])
    return "finished"
"""

    async def scenario(ember: Ember) -> None:
        await ember.deploy("slow", slow)
        running = await submit(ember, "slow", {"sleep": 30})
        for _ in range(400):
            state = (await ember.http.get(f"/tasks/{running['request_id']}")).json()
            if state["status"] == "running":
                break
            await asyncio.sleep(0.025)
        stopped = await ember.http.post(f"/tasks/{running['request_id']}/stop")
        assert stopped.json()["status"] == "stopped"
        assert stopped.json()["history"][-1]["outcome"] == "stopped"

        await ember.http.post("/functions/slow/pause")
        await ember.settle()
        queued = await submit(ember, "slow", {"sleep": 0})
        answer = await ember.http.post(f"/tasks/{queued['request_id']}/stop")
        assert answer.json()["status"] == "stopped" and answer.json()["attempts"] == 0
        await ember.http.post("/functions/slow/resume")
        await ember.services.invoker.quiet()  # the worker looked since: nothing to run
        later = await ember.http.get(f"/tasks/{queued['request_id']}")
        assert later.json()["status"] == "stopped"
        unknown = await ember.http.get("/tasks/nope")
        assert unknown.status_code == 404 and unknown.json()["error"]["code"] == "TaskNotFound"

    run_async(scenario)


def test_a_stop_that_meets_the_attempt_settling_stops_the_retry_it_left(run_async: Run
                                                                         ) -> None:
    """The stop finds the event leased and cancels its attempt just as that attempt's retry
    is written: the stop's acknowledgement then holds a spent lease, and the event, back in
    the queue, must be stopped there rather than run again."""

    async def scenario(ember: Ember) -> None:
        await ember.deploy("flaky", FLAKY, **{"async": {"max_retries": 5}})
        invoker = ember.services.invoker
        queue = invoker.queue
        loop = asyncio.get_running_loop()
        retrying, cancelled = asyncio.Event(), asyncio.Event()
        writes: list[asyncio.Task[None]] = []
        original_retry, original_ack = queue.retry, queue.ack

        async def retry(delivery: Any, task: Any, **kwargs: Any) -> None:
            async def write() -> None:
                await cancelled.wait()
                await original_retry(delivery, task, **kwargs)

            writes.append(loop.create_task(write()))
            retrying.set()
            try:
                await asyncio.shield(writes[-1])
            except asyncio.CancelledError:
                cancelled.set()  # the stop cancelled the attempt: the retry goes out now
                raise

        async def ack(delivery: Any, task: Any) -> None:
            if writes:
                await writes[-1]  # the retry is written before the stop's acknowledgement
            await original_ack(delivery, task)

        queue.retry, queue.ack = retry, ack  # type: ignore[method-assign]
        accepted = await submit(ember, "flaky", {"succeed_on": 2})
        await retrying.wait()
        stopped = await ember.http.post(f"/tasks/{accepted['request_id']}/stop")
        assert stopped.status_code == 200, stopped.text
        assert stopped.json()["status"] == "stopped", stopped.json()
        await ember.services.invoker.quiet()  # the retry came due: nothing runs it
        later = (await ember.http.get(f"/tasks/{accepted['request_id']}")).json()
        assert later["status"] == "stopped" and later["attempts"] == 1, later

    run_async(scenario)


def test_payload_over_the_async_limit_is_refused(run_async: Run) -> None:
    async def scenario(ember: Ember) -> None:
        await ember.deploy("echo", ECHO)
        big = base64.b64encode(b"x" * (257 * 1024 - 100)).decode()
        answer = await ember.http.post(
            "/functions/echo/invoke", content=big.encode() + b" " * 40000,
            headers={"X-Ember-Invocation-Type": "async", "content-type": "text/plain"},
        )
        assert answer.status_code == 413
        assert answer.json()["error"]["code"] == "PayloadTooLarge"
        assert (await ember.http.get("/functions/echo/tasks")).json()["tasks"] == []
        stats = (await ember.http.get("/functions/echo/stats")).json()
        assert stats["queue"]["depth"] == 0
        missing = await ember.http.post("/functions/ghost/invoke",
                                        headers={"X-Ember-Invocation-Type": "async"})
        assert missing.status_code == 404

    run_async(scenario)


def test_sync_callers_go_before_an_async_backlog(run_async: Run, tmp_path: Path) -> None:
    gated = """
import os, time

def handler(event, context):
    if event.get("gate"):  # async events hold the instance until the test opens the gate
        while not os.path.exists(event["gate"]):
            time.sleep(0.005)
    with open(event["out"], "a") as f:
        f.write(event["name"] + "\\n")
    return "ok"
"""
    gate, out = tmp_path / "gate", tmp_path / "order"

    async def scenario(ember: Ember) -> None:
        await ember.deploy("shared", gated, max_instances=1)
        ids = [(await submit(ember, "shared", {"gate": str(gate), "out": str(out),
                                               "name": f"async-{i}"}))["request_id"]
               for i in range(5)]
        for task_id in ids:  # all claimed: one holds the only instance, the rest wait for it
            await wait_for_state(ember, task_id, lambda t: t["status"] == "running")
        (pool,) = [p for p in ember.services.router._pools.pools()
                   if p.key.function == "shared"]
        sync = asyncio.ensure_future(ember.invoke("shared", {"out": str(out), "name": "sync"}))
        while not any(not f.done() for f in pool._waiters):  # the sync call waits too
            await asyncio.sleep(0.005)
        gate.touch()
        assert (await sync).status_code == 200
        for task_id in ids:
            assert (await wait(ember, task_id))["status"] == "succeeded"
        order = out.read_text().split()
        # Behind at most the async attempt that held the instance, not behind all five.
        assert order.index("sync") <= 1, order

    run_async(scenario, **HOST_FILES)


def test_an_alias_has_async_settings_of_its_own(run_async: Run) -> None:
    async def scenario(ember: Ember) -> None:
        await ember.deploy("flaky", FLAKY, **{"async": {"max_retries": 2}})
        await ember.http.post("/functions/flaky/versions")
        answer = await ember.http.put(
            "/functions/flaky/aliases/strict",
            json={"version": 1, "async": {"max_retries": 0}},
        )
        assert answer.status_code == 201, answer.text
        assert answer.json()["async"]["max_retries"] == 0
        strict = await submit(ember, "flaky", {"succeed_on": 2}, qualifier="strict")
        lenient = await submit(ember, "flaky", {"succeed_on": 2}, qualifier="1")
        assert (await wait(ember, strict["request_id"]))["status"] == "failed"
        done = await wait(ember, lenient["request_id"])
        assert done["status"] == "succeeded" and done["attempts"] == 2
        # Moving the alias without settings falls back to the version's.
        await ember.http.put("/functions/flaky/aliases/strict", json={"version": 1})
        again = await submit(ember, "flaky", {"succeed_on": 2}, qualifier="strict")
        assert (await wait(ember, again["request_id"]))["status"] == "succeeded"

    run_async(scenario)


# The slots of max_instances are shared through the Redis queue: a cluster's.
@pytest.mark.parametrize("queue_settings", ["redis"], indirect=True)
def test_an_event_waits_without_retries_while_other_nodes_hold_max_instances(
        run: Run, queue_settings: dict[str, Any]) -> None:
    """Every slot of max_instances held by another node of the cluster is no failure of
    the event: it goes back to the queue as it was (no attempt, no backoff) until a slot
    comes free."""

    async def scenario(ember: Ember) -> None:
        await ember.deploy("echo", ECHO, max_instances=1)
        slots = ember.services.slots
        assert slots is not None
        refused = asyncio.Event()
        refusals = 0
        take = slots.take

        async def counting_take(pool: str, limit: int) -> str:
            nonlocal refusals
            try:
                return await take(pool, limit)
            except SlotsTaken:
                refusals += 1
                if refusals >= 3:
                    refused.set()
                raise

        slots.take = counting_take  # type: ignore[method-assign]
        pool = pool_key_text((await ember.services.router.pick("echo", None)).key)
        other = RedisSlots(queue_settings["queue_url"], queue_settings["queue_prefix"],
                           "other-node", ttl_s=60)
        token = await other.take(pool, 1)
        try:
            accepted = await submit(ember, "echo", {"n": 1})
            await asyncio.wait_for(refused.wait(), 60)
            task = (await ember.http.get(f"/tasks/{accepted['request_id']}")).json()
            assert task["status"] == "queued" and task["history"] == [], task
        finally:
            await other.give(pool, token)
            await other.close()
        done = await wait(ember, accepted["request_id"])
        assert done["status"] == "succeeded", done
        assert done["attempts"] == 1
        assert [a["outcome"] for a in done["history"]] == ["success"]

    run(scenario, **queue_settings)
