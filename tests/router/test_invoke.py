"""The invoke path end to end in one process: API → router → pool → real instances."""

from __future__ import annotations

import asyncio
import base64
import random
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ember.clock import ManualClock
from tests.conftest import HOST_FILES
from tests.inprocess import Ember
from tests.waiting import until

ECHO = """
import os

def handler(event, context):
    return {"event": event, "pid": os.getpid(), "version": context.function_version}
"""

Run = Callable[..., None]

GATED = """
import os, time

def handler(event, context):
    while not os.path.exists(event["until"]):
        time.sleep(0.01)
    return "done"
"""


async def tick(clock: ManualClock, seconds: float) -> None:
    """Move ``clock`` and wait until every loop it woke (the reaper among them) has done
    its round and sleeps again."""
    asleep = clock.sleeping()
    clock.advance(seconds)
    await until(lambda: clock.sleeping() >= asleep, message="the clock's sleepers back asleep")


def test_cold_then_warm(run: Run) -> None:
    async def scenario(ember: Ember) -> None:
        await ember.deploy("echo", ECHO)
        first = await ember.invoke("echo", {"n": 1})
        assert first.status_code == 200, first.text
        assert first.json()["event"] == {"n": 1}
        assert first.headers["x-ember-cold-start"] == "true"
        assert float(first.headers["x-ember-init-ms"]) > 0
        assert first.headers["x-ember-version"] == "latest"
        assert len(first.headers["x-ember-request-id"]) == 36
        second = await ember.invoke("echo", {"n": 2})
        assert second.headers["x-ember-cold-start"] == "false"
        assert second.headers["x-ember-init-ms"] == "0.000"
        assert second.json()["pid"] == first.json()["pid"]
        assert float(second.headers["x-ember-duration-ms"]) >= 0

    run(scenario)


def test_keep_alive_reclaims_then_scales_to_zero(run: Run) -> None:
    clock = ManualClock()

    async def scenario(ember: Ember) -> None:
        await ember.deploy("echo", ECHO, keep_alive_s=30)
        first = await ember.invoke("echo")
        assert ember.instances("echo") == 1
        await tick(clock, 10)
        assert ember.instances("echo") == 1
        warm = await ember.invoke("echo")
        assert warm.headers["x-ember-cold-start"] == "false"
        await tick(clock, 31)
        assert ember.instances("echo") == 0
        again = await ember.invoke("echo")
        assert again.headers["x-ember-cold-start"] == "true"
        assert again.json()["pid"] != first.json()["pid"]

    run(scenario, clock)


def test_min_instances_kept_warm(run: Run) -> None:
    clock = ManualClock()

    async def scenario(ember: Ember) -> None:
        await ember.deploy("warm", ECHO, min_instances=1, keep_alive_s=5)
        await until(lambda: ember.idle("warm") == 1, message="the min instance started")
        first = await ember.invoke("warm")
        assert first.headers["x-ember-cold-start"] == "false", first.headers
        await tick(clock, 60)
        assert ember.instances("warm") == 1 and ember.idle("warm") == 1

    run(scenario, clock)


def test_alias_split_follows_weights(run: Run) -> None:
    async def scenario(ember: Ember) -> None:
        await ember.deploy("split", ECHO)
        await ember.http.post("/functions/split/versions")
        await ember.update_code("split", ECHO + "\n# v2\n")
        await ember.http.post("/functions/split/versions")
        answer = await ember.http.put(
            "/functions/split/aliases/live",
            json={"version": 1, "additional_version": 2, "weight": 0.3},
        )
        assert answer.status_code == 201
        n = 400
        # Each invocation of the alias draws once from the router's random source: seeded,
        # the versions it picks are known in advance.
        ember.services.router._rng.seed(7)
        replay = random.Random(7)
        expected = ["2" if replay.random() < 0.3 else "1" for _ in range(n)]
        seen = []
        for _ in range(n):
            result = await ember.invoke("split", qualifier="live")
            assert result.status_code == 200
            version = result.headers["x-ember-version"]
            assert result.json()["version"] == version
            seen.append(version)
        assert seen == expected
        assert 90 < seen.count("2") < 150  # about 30 %
        pinned = await ember.invoke("split", qualifier="2")
        assert pinned.headers["x-ember-version"] == "2"

    run(scenario)


def test_max_instances_and_queue_give_429(run: Run, tmp_path: Path) -> None:
    gate = tmp_path / "go"

    async def scenario(ember: Ember) -> None:
        await ember.deploy("slow", GATED, max_instances=1)
        gate.touch()
        await ember.invoke("slow", {"until": str(gate)})  # resolved and warm
        gate.unlink()
        calls = [asyncio.create_task(ember.invoke("slow", {"until": str(gate)}))
                 for _ in range(3)]
        # One runs, one waits, and the third finds the queue full (depth 1).
        await until(lambda: ember.busy("slow") == 1 and ember.waiting("slow"))
        throttled = await until(lambda: next((c for c in calls if c.done()), None))
        assert throttled.result().status_code == 429, throttled.result().text
        assert throttled.result().json()["error"]["code"] == "TooManyRequests"
        gate.touch()
        answers = [await c for c in calls if c is not throttled]
        assert [a.status_code for a in answers] == [200, 200], [a.text for a in answers]
        assert ember.instances("slow") == 1

    run(scenario, ManualClock(), queue_depth=1, **HOST_FILES)


def test_queue_wait_bounded(run: Run, tmp_path: Path) -> None:
    clock = ManualClock()
    gate = tmp_path / "go"

    async def scenario(ember: Ember) -> None:
        await ember.deploy("slow", GATED, max_instances=1)
        busy = asyncio.create_task(ember.invoke("slow", {"until": str(gate)}))
        await until(lambda: ember.busy("slow") == 1, message="the first request running")
        # Its own 30 s wait, not any other loop of the server going back to sleep: the
        # clock must not move before that wait has begun.
        asleep = clock.sleeping_for(30)
        waited = asyncio.create_task(ember.invoke("slow", {"until": str(gate)}))
        await until(lambda: ember.waiting("slow") and clock.sleeping_for(30) > asleep,
                    message="the second request waiting")
        clock.advance(29.9)
        await asyncio.sleep(0)
        assert not waited.done()
        clock.advance(0.1)
        answer = await waited  # at once: the wait is on the clock
        assert answer.status_code == 429, answer.text
        assert "30 s" in answer.json()["error"]["message"]
        gate.touch()
        assert (await busy).status_code == 200

    run(scenario, clock, queue_wait_s=30, **HOST_FILES)


def test_200_concurrent_with_four_instances(run: Run) -> None:
    source = """
import os, time

def handler(event, context):
    time.sleep(0.005)
    return {"i": event["i"], "pid": os.getpid()}
"""

    async def scenario(ember: Ember) -> None:
        await ember.deploy("busy", source, max_instances=4)
        answers = await asyncio.gather(*(ember.invoke("busy", {"i": i}) for i in range(200)))
        assert all(a.status_code == 200 for a in answers), [
            a.text for a in answers if a.status_code != 200
        ][:3]
        assert sorted(a.json()["i"] for a in answers) == list(range(200))
        # Never more than 4 instances: at most 4 cold starts, 4 processes.
        assert sum(a.headers["x-ember-cold-start"] == "true" for a in answers) <= 4
        assert len({a.json()["pid"] for a in answers}) <= 4
        assert ember.instances("busy") <= 4

    # The queue wait is on the manual clock: requests wait as long as they need.
    run(scenario, ManualClock(), queue_depth=500)


def test_faults_are_reported_and_the_platform_survives(run: Run) -> None:
    source = """
import os, signal, time

def handler(event, context):
    kind = event["kind"]
    if kind == "raise":
        raise ValueError("bad input: 42")
    if kind == "exit":
        os._exit(3)
    if kind == "segv":
        os.kill(os.getpid(), signal.SIGSEGV)
    if kind == "sleep":
        time.sleep(30)
    if kind == "oom":
        hog = bytearray(400 * 1024 * 1024)
        hog[::4096] = b"x" * len(hog[::4096])
        return len(hog)
    return "fine"
"""

    async def scenario(ember: Ember) -> None:
        # A whole core: at 128 MiB's share (0.07 of one) touching 400 MiB can take longer
        # than the timeout on a loaded machine, and the OOM case would time out instead.
        await ember.deploy("faulty", source, timeout_s=1, memory_mb=128, cpu=1.0)
        expect = {
            "raise": (502, "FunctionError"),
            "exit": (502, "InstanceCrashed"),
            "segv": (502, "InstanceCrashed"),
            "sleep": (504, "FunctionTimeout"),
            "oom": (502, "FunctionOutOfMemory"),
        }
        for kind, (status, code) in expect.items():
            answer = await ember.invoke("faulty", {"kind": kind})
            assert answer.status_code == status, (kind, answer.text)
            error = answer.json()["error"]
            assert error["code"] == code, (kind, error)
            assert answer.headers["x-ember-request-id"]
            ok = await ember.invoke("faulty", {"kind": "ok"})
            assert ok.status_code == 200 and ok.text == "fine", (kind, ok.text)
        raised = await ember.invoke("faulty", {"kind": "raise"})
        details = raised.json()["error"]["details"]
        assert details["type"] == "ValueError"
        assert "bad input: 42" in details["message"]
        assert "Traceback" in details["traceback"]

    run(scenario)


def test_init_error(run: Run) -> None:
    async def scenario(ember: Ember) -> None:
        await ember.deploy("broken", "import no_such_module\n")
        answer = await ember.invoke("broken")
        assert answer.status_code == 502
        error = answer.json()["error"]
        assert error["code"] == "InitError"
        assert "no_such_module" in error["message"] + str(error["details"])
        await ember.deploy(
            "badinit", ECHO + "\ndef init(ctx):\n    raise RuntimeError('no db')\n",
            initializer="main.init",
        )
        answer = await ember.invoke("badinit")
        assert answer.json()["error"]["code"] == "InitError"
        assert "no db" in str(answer.json()["error"])

    run(scenario)


def test_environment_async_handler_and_context(run: Run) -> None:
    source = """
import asyncio, os

async def handler(event, context):
    await asyncio.sleep(0)
    return {
        "greeting": os.environ["GREETING"],
        "name": context.function_name,
        "memory": context.memory_limit_mb,
        "remaining": context.get_remaining_time_ms(),
        "request_id": context.request_id,
    }
"""

    async def scenario(ember: Ember) -> None:
        await ember.deploy("ctx", source, environment={"GREETING": "hej"}, timeout_s=5)
        answer = await ember.invoke("ctx")
        body = answer.json()
        assert body["greeting"] == "hej"
        assert body["name"] == "ctx"
        assert body["memory"] == 256
        assert 0 < body["remaining"] <= 5000
        assert body["request_id"] == answer.headers["x-ember-request-id"]

    run(scenario)


def test_disabled_function_refuses_and_code_update_is_picked_up(run: Run) -> None:
    async def scenario(ember: Ember) -> None:
        await ember.deploy("fn", "def handler(e, c):\n    return 1\n")
        assert (await ember.invoke("fn")).json() == 1
        await ember.http.post("/functions/fn/disable")
        await ember.settle()
        refused = await ember.invoke("fn")
        assert refused.status_code == 409
        assert refused.json()["error"]["code"] == "FunctionDisabled"
        await ember.http.post("/functions/fn/enable")
        await ember.update_code("fn", "def handler(e, c):\n    return 2\n")
        answer = await ember.invoke("fn")
        assert answer.json() == 2 and answer.headers["x-ember-cold-start"] == "true"
        missing = await ember.invoke("ghost")
        assert missing.status_code == 404
        assert missing.json()["error"]["code"] == "FunctionNotFound"

    run(scenario)


def test_raw_payloads(run: Run) -> None:
    source = """
def handler(event, context):
    if isinstance(event, bytes):
        return event[::-1]
    return "text: " + str(event)
"""

    async def scenario(ember: Ember) -> None:
        await ember.deploy("raw", source)
        answer = await ember.http.post(
            "/functions/raw/invoke", content=b"\x00\x01abc",
            headers={"content-type": "application/octet-stream"},
        )
        assert answer.content == b"cba\x01\x00"
        assert answer.headers["content-type"] == "application/octet-stream"
        text = await ember.invoke("raw", {"a": 1})
        assert text.text == "text: {'a': 1}"
        assert text.headers["content-type"].startswith("text/plain")

    run(scenario)


LOGGER = """
import logging, os, sys

def handler(event, context):
    print("out", event["n"])
    print("err", event["n"], file=sys.stderr)
    os.write(1, b"raw fd write\\n")
    logging.getLogger("app").warning("careful %s", event["n"])
    context.logger.info("via context")
    return event["n"]
"""


def test_logs_per_request_and_filters(run: Run) -> None:
    async def scenario(ember: Ember) -> None:
        await ember.deploy("logger", LOGGER)
        first = await ember.invoke("logger", {"n": 1}, headers={"X-Ember-Log-Type": "Tail"})
        tail = base64.b64decode(first.headers["x-ember-log-tail"]).decode()
        assert "out 1" in tail and "careful 1" in tail
        second = await ember.invoke("logger", {"n": 2})
        rid1 = first.headers["x-ember-request-id"]
        rid2 = second.headers["x-ember-request-id"]

        async def logs(**params: Any) -> list[dict[str, Any]]:
            answer = await ember.http.get("/functions/logger/logs", params=params)
            assert answer.status_code == 200, answer.text
            return list(answer.json()["logs"])

        mine = await logs(request_id=rid1)
        lines = [r["line"] for r in mine]
        assert "out 1" in lines and "err 1" in lines and "raw fd write" in lines
        assert any("careful 1" in line for line in lines)
        assert all(r["request_id"] == rid1 for r in mine)
        levels = {r["line"]: r["level"] for r in mine}
        assert levels["out 1"] == "INFO" and levels["err 1"] == "ERROR"
        warnings = await logs(level="WARNING")
        assert {r["request_id"] for r in warnings} == {rid1, rid2}
        assert all(r["level"] in ("WARNING", "ERROR", "CRITICAL") for r in warnings)
        grep = await logs(grep="CAREFUL 2")
        assert [r["request_id"] for r in grep] == [rid2]
        everything = await logs()
        assert len(await logs(since=everything[-1]["ts"])) >= 1
        assert await logs(until=everything[0]["ts"] - 1) == []
        newer = await ember.http.get(
            "/functions/logger/logs", params={"cursor": str(everything[-1]["id"])}
        )
        assert newer.json()["logs"] == []
        bad = await ember.http.get("/functions/logger/logs", params={"level": "LOUD"})
        assert bad.status_code == 400

        await ember.deploy(
            "initlog", ECHO + "\ndef init(ctx):\n    print('warming up')\n",
            initializer="main.init",
        )
        cold = await ember.invoke("initlog")
        answer = await ember.http.get(
            "/functions/initlog/logs",
            params={"request_id": cold.headers["x-ember-request-id"]},
        )
        assert [r["line"] for r in answer.json()["logs"]] == ["warming up"]

    run(scenario)


def test_stats_and_metrics(run: Run) -> None:
    source = """
def handler(event, context):
    if event.get("fail"):
        raise RuntimeError("no")
    return "ok"
"""

    async def scenario(ember: Ember) -> None:
        await ember.deploy("counted", source)
        for _ in range(4):
            await ember.invoke("counted", {})
        await ember.invoke("counted", {"fail": True})
        answer = await ember.http.get("/functions/counted/stats", params={"window_s": 600})
        stats = answer.json()
        assert stats["invocations"] == 5
        assert stats["errors"] == 1
        assert stats["cold_starts"] == 1
        assert stats["throttles"] == 0 and stats["timeouts"] == 0
        assert stats["duration_ms"]["p50"] > 0
        assert stats["duration_ms"]["p99"] >= stats["duration_ms"]["p50"]
        assert sum(p["invocations"] for p in stats["series"]) == 5
        metrics = (await ember.http.get("/metrics")).text
        node = ember.services.nodes.id  # every series names the node
        counted = ('ember_invocations_total{function="counted",node="%s",outcome="%s",'
                   'version="latest"} %s')
        assert counted % (node, "success", "4.0") in metrics
        assert counted % (node, "error", "1.0") in metrics
        assert (f'ember_cold_starts_total{{function="counted",node="{node}",version="latest"}}'
                ' 1.0') in metrics
        assert (f'ember_instances{{function="counted",node="{node}",state="idle",'
                'version="latest"} 1.0') in metrics
        assert "ember_invocation_duration_seconds_bucket" in metrics

        # A function deleted and made again starts with no history.
        assert (await ember.http.delete("/functions/counted")).status_code == 200
        await ember.deploy("counted", source)
        fresh = await ember.http.get("/functions/counted/stats")
        assert fresh.json()["invocations"] == 0
        logs = await ember.http.get("/functions/counted/logs")
        assert logs.json()["logs"] == []

    run(scenario)
