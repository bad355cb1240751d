"""Triggers with target ``workflow``: each event a source delivers starts one execution of
the workflow, the CloudEvent as its input — a timer on a manual clock, an HTTP trigger
answering 202 with the execution, a Redis stream record delivered again (same id) starting
nothing more (real Redis on 127.0.0.1); the resource's rules, and a targeted workflow's
deletion refused unless forced."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import redis.asyncio as aioredis

from ember.clock import ManualClock, SystemClock
from ember.errors import WorkflowNotFound
from ember.model.trigger import Trigger
from ember.model.workflow import Execution
from ember.triggers.base import SUBMIT_TRIES, SourceContext
from tests.inprocess import Ember
from tests.triggers.kits import REDIS_URL, Function, MqttKit, RedisStreamKit
from tests.waiting import until, until_true

Run = Callable[..., None]

KEEP = [{"keep": {"set": {"type": "${ .type }", "id": "${ .id }", "data": "${ .data }"}}}]
"""A workflow that outputs its input's (the event's) type, id and data."""


def doc(name: str) -> dict[str, Any]:
    return {"document": {"dsl": "1.0.0", "namespace": "test", "name": name,
                         "version": "1.0.0"}, "do": KEEP}


async def deployed(ember: Ember, name: str) -> None:
    answer = await ember.http.put(f"/workflows/{name}", json=doc(name))
    assert answer.status_code == 201, answer.text


async def workflow_trigger(ember: Ember, name: str, workflow: str,
                           source: dict[str, Any]) -> dict[str, Any]:
    answer = await ember.http.post("/triggers", json={
        "name": name, "target": "workflow", "workflow": workflow, "source": source})
    assert answer.status_code == 201, answer.text
    await ember.settle()
    return dict(answer.json())


async def status(ember: Ember, name: str) -> dict[str, Any]:
    answer = await ember.http.get(f"/triggers/{name}")
    assert answer.status_code == 200, answer.text
    return dict(answer.json()["status"])


def executions(ember: Ember, workflow: str) -> list[Execution]:
    return ember.services.workflows.list_executions(workflow=workflow).items


def test_a_timer_starts_the_workflow_with_its_event(run: Run) -> None:
    clock = ManualClock(start=1_700_000_000)

    async def scenario(ember: Ember) -> None:
        await deployed(ember, "ticked")
        created = await workflow_trigger(ember, "tick", "ticked", {
            "kind": "timer", "schedule": "rate(1 minute)", "payload": {"n": 1}})
        assert (created["target"], created["workflow"], created["function"],
                created["qualifier"]) == ("workflow", "ticked", None, None)
        clock.advance(60)
        [execution] = await until(lambda: executions(ember, "ticked"),
                                  message="an execution started")
        done = await ember.services.workflows.get_execution(execution.id, wait_s=60)
        assert done.status == "succeeded", done.error
        assert done.output == {"type": "dev.ember.timer.tick", "id": done.input["id"],
                               "data": {"n": 1}}
        assert done.input["source"] == "ember/triggers/tick"
        counted = await status(ember, "tick")
        assert (counted["events"], counted["invocations"], counted["failures"]) == (1, 1, 0)

    run(scenario, clock=clock)


def test_an_http_trigger_answers_202_with_the_execution(run: Run) -> None:
    async def scenario(ember: Ember) -> None:
        await deployed(ember, "hooked")
        await workflow_trigger(ember, "hook", "hooked", {"kind": "http", "path": "/hook"})
        answer = await ember.http.post("/http/hook/orders", json={"order": 42})
        assert answer.status_code == 202, answer.text
        started = answer.json()
        assert (started["workflow"], started["created"]) == ("hooked", True)
        done = (await ember.http.get(f"/executions/{started['execution']}",
                                     params={"wait_s": 60})).json()
        assert done["status"] == "succeeded", done["error"]
        data = done["output"]["data"]
        assert (data["method"], data["path"], data["body"]) == (
            "POST", "/orders", '{"order":42}')
        assert done["output"]["type"] == "dev.ember.http.request"
        again = await ember.http.post("/http/hook/orders", json={"order": 43})
        assert again.status_code == 202 and again.json()["execution"] != started["execution"]
        assert len(executions(ember, "hooked")) == 2

    run(scenario)


async def _rewind(kit: RedisStreamKit) -> None:
    """Make Redis deliver the stream's records again to the trigger's consumer group (as
    after a consumer lost them), with their ids unchanged."""
    client = aioredis.from_url(REDIS_URL)
    try:
        await client.xgroup_setid(kit.stream, "ember", "0")
    finally:
        await client.aclose()


async def _record(kit: RedisStreamKit, fields: dict[str, str]) -> str:
    client = aioredis.from_url(REDIS_URL)
    try:
        added = await client.xadd(kit.stream, fields)  # type: ignore[arg-type]
        return added.decode() if isinstance(added, bytes) else str(added)
    finally:
        await client.aclose()


def test_a_redis_record_delivered_again_starts_one_execution(run: Run) -> None:
    """MQTT gives a message no stable id, so the broker here is Redis streams: a record's
    event id is ``{stream}/{record id}``, the same at each delivery."""

    async def scenario(ember: Ember) -> None:
        await deployed(ember, "streamed")
        kit = RedisStreamKit()
        try:
            await workflow_trigger(ember, "records", "streamed",
                                   kit.model().model_dump(mode="json"))

            async def counted(events: int, invocations: int) -> bool:
                now = await status(ember, "records")
                return bool(now["events"] >= events and now["invocations"] >= invocations)

            first = await _record(kit, {"order": "1"})
            await until_true(lambda: counted(1, 1), message="the record delivered")
            await _rewind(kit)
            second = await _record(kit, {"order": "2"})  # wakes the reader: both come
            await until_true(lambda: counted(3, 3), message="the records delivered again")
            started = executions(ember, "streamed")
            assert sorted(e.input["id"] for e in started) == [
                f"{kit.stream}/{first}", f"{kit.stream}/{second}"]
            for execution in started:
                done = await ember.services.workflows.get_execution(execution.id, wait_s=60)
                assert done.status == "succeeded", done.error
                assert done.output["type"] == "dev.ember.redis_stream.record"
            assert (await status(ember, "records"))["failures"] == 0
        finally:
            await ember.http.delete("/triggers/records")
            await ember.settle()
            await kit.aclose()

    run(scenario)


def _fields(answer: Any) -> set[str]:
    assert answer.status_code == 400, answer.text
    return {e["field"] for e in answer.json()["error"]["details"]["errors"]}


def test_target_rules(run: Run) -> None:
    async def scenario(ember: Ember) -> None:
        await ember.deploy("fn", "def handler(event, context):\n    return event\n")
        await deployed(ember, "flow")
        source = {"kind": "http", "path": "/rules"}
        post = ember.http.post

        async def create(**fields: Any) -> Any:
            return await post("/triggers", json={"name": "t", "source": source, **fields})

        assert _fields(await create(target="workflow")) == {"workflow"}
        assert _fields(await create(target="workflow", workflow="flow",
                                    function="fn")) == {"function"}
        assert _fields(await create(target="workflow", workflow="flow",
                                    qualifier="1")) == {"qualifier"}
        assert _fields(await create(function="fn", workflow="flow")) == {"workflow"}
        assert _fields(await create(target="events", workflow="flow")) == {"workflow"}
        missing = await create(target="workflow", workflow="nowhere")
        assert missing.status_code == 404, missing.text
        assert missing.json()["error"]["code"] == "WorkflowNotFound"

        made = await workflow_trigger(ember, "t", "flow", source)
        assert made["workflow"] == "flow"
        listed = (await ember.http.get("/triggers")).json()["triggers"]
        assert [(t["name"], t["target"], t["workflow"]) for t in listed] == [
            ("t", "workflow", "flow")]
        patch = ember.http.patch
        assert _fields(await patch("/triggers/t", json={"function": "fn"})) == {"function"}
        assert _fields(await patch("/triggers/t", json={"target": "events"})) == {"target"}
        moved = await patch("/triggers/t", json={"workflow": "nowhere"})
        assert moved.status_code == 404, moved.text
        described = await patch("/triggers/t", json={"description": "starts flow"})
        assert described.status_code == 200, described.text
        assert described.json()["workflow"] == "flow"

    run(scenario)


def test_deleting_a_targeted_workflow_is_refused_unless_forced(run: Run) -> None:
    async def scenario(ember: Ember) -> None:
        await deployed(ember, "flow")
        await workflow_trigger(ember, "hook", "flow", {"kind": "http", "path": "/hook"})
        refused = await ember.http.delete("/workflows/flow")
        assert refused.status_code == 409, refused.text
        error = refused.json()["error"]
        assert error["code"] == "Conflict" and "hook" in error["message"]
        assert error["details"]["triggers"] == ["hook"]

        forced = await ember.http.delete("/workflows/flow", params={"force": "true"})
        assert forced.status_code == 204, forced.text
        # The trigger stays, and its events fail as those of a missing function do.
        answer = await ember.http.post("/http/hook", json={})
        assert answer.status_code == 404, answer.text
        assert answer.json()["error"]["code"] == "WorkflowNotFound"
        counted = await status(ember, "hook")
        assert (counted["events"], counted["invocations"], counted["failures"]) == (1, 0, 1)
        assert (await ember.http.delete("/triggers/hook")).status_code == 200
        await deployed(ember, "flow")
        assert (await ember.http.delete("/workflows/flow")).status_code == 204

    run(scenario)



def test_a_broker_message_for_a_missing_workflow_is_given_up() -> None:
    """As for a missing function: tried SUBMIT_TRIES times, counted, then given up (the
    broker source then settles the message)."""

    async def scenario() -> None:
        tried: list[tuple[str, str | None]] = []

        async def run_workflow(name: str, input: Any = None, *,
                               idempotency_key: str | None = None,
                               wait_s: float | None = None) -> tuple[Execution, bool]:
            tried.append((name, idempotency_key))
            raise WorkflowNotFound(f"workflow {name!r} does not exist (test)")

        kit = MqttKit()
        function = Function()  # never called: a workflow trigger starts executions
        trigger = Trigger(name=kit.name, function=None, qualifier=None, source=kit.model(),
                          state="enabled", description="", created_at=0.0, updated_at=0.0,
                          target="workflow", workflow="gone")
        context = SourceContext(trigger, SystemClock(), function.submit, function.invoke,
                                run_workflow=run_workflow)
        event = context.event(type="mqtt.message", data={"n": 1})
        assert await context.submit_or_give_up(event, retry_delay_s=0) is False
        key = f"trigger:{kit.name}:ember/triggers/{kit.name}|{event['id']}"
        assert tried == [("gone", key)] * SUBMIT_TRIES
        assert (context.status.failures, context.status.dropped) == (SUBMIT_TRIES, 1)
        assert context.status.invocations == 0

    asyncio.run(scenario())
