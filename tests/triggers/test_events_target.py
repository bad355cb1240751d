"""Triggers with target ``events``: their events go to the workflow event bus, where an MQTT
message AND a Redis stream record together resume a ``listen`` or start a ``schedule.on``
workflow (real Mosquitto and Redis on 127.0.0.1); an HTTP trigger answers 202 with what its
event reached; the resource's rules; a Redis batch published record by record, in order."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import pytest
import redis.asyncio as aioredis

from ember.clock import SystemClock
from ember.errors import FunctionError, InvalidSpec, ServiceUnavailable
from ember.model.trigger import Trigger
from ember.model.workflow import Execution
from ember.triggers.base import SUBMIT_TRIES, Publish, SourceContext, make_source
from ember.workflows.events import PublishResult
from tests.inprocess import Ember
from tests.triggers.kits import REDIS_URL, Function, MqttKit, RedisStreamKit
from tests.waiting import until, until_true

Run = Callable[..., None]
Event = dict[str, Any]

MQTT_TYPE = "dev.ember.mqtt.message"
RECORD_TYPE = "dev.ember.redis_stream.record"


def doc(name: str, do: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
    return {"document": {"dsl": "1.0.0", "namespace": "test", "name": name,
                         "version": "1.0.0"}, "do": do, **extra}


def joined(order: str) -> list[dict[str, Any]]:
    """Filters for one MQTT message and one Redis record of ``order``."""
    return [
        {"with": {"type": MQTT_TYPE, "data": {"order": order}}},
        {"with": {"type": RECORD_TYPE, "data": {"fields": {"order": order}}}},
    ]


async def bus_trigger(ember: Ember, name: str, source: dict[str, Any]) -> dict[str, Any]:
    answer = await ember.http.post(
        "/triggers", json={"name": name, "target": "events", "source": source})
    assert answer.status_code == 201, answer.text
    return dict(answer.json())


async def status(ember: Ember, name: str) -> dict[str, Any]:
    answer = await ember.http.get(f"/triggers/{name}")
    assert answer.status_code == 200, answer.text
    return dict(answer.json()["status"])


async def connected(ember: Ember, name: str) -> None:
    async def check() -> bool:
        return bool((await status(ember, name))["connected"])

    await until_true(check, message=f"trigger {name} connected")


async def published(ember: Ember, name: str, count: int) -> None:
    """Wait until trigger ``name`` has published ``count`` events."""
    async def check() -> bool:
        return bool((await status(ember, name))["invocations"] >= count)

    await until_true(check, message=f"trigger {name} published {count}")


@asynccontextmanager
async def brokers(ember: Ember) -> AsyncIterator[tuple[MqttKit, RedisStreamKit]]:
    """An MQTT trigger and a Redis streams trigger, both to the event bus, connected."""
    mqtt, redis = MqttKit(), RedisStreamKit()
    try:
        await bus_trigger(ember, mqtt.name, mqtt.model().model_dump(mode="json"))
        await bus_trigger(ember, redis.name, redis.model().model_dump(mode="json"))
        await connected(ember, mqtt.name)
        await connected(ember, redis.name)
        yield mqtt, redis
    finally:
        for name in (mqtt.name, redis.name):
            await ember.http.delete(f"/triggers/{name}")
        await ember.settle()
        await mqtt.aclose()
        await redis.aclose()


async def record(kit: RedisStreamKit, fields: dict[str, str]) -> None:
    client = aioredis.from_url(REDIS_URL)
    try:
        await client.xadd(kit.stream, fields)  # type: ignore[arg-type]
    finally:
        await client.aclose()


async def waiting(ember: Ember, name: str) -> Execution:
    """Start an execution of ``name`` and return it once it waits on its listen."""
    service = ember.services.workflows
    execution, _ = await service.run(name)

    async def is_waiting() -> bool:
        return (await service.get_execution(execution.id)).status == "waiting"

    await until_true(is_waiting, message=f"execution {execution.id} waiting")
    return execution


def test_an_mqtt_message_and_a_redis_record_resume_a_listen(run: Run) -> None:
    """Through the API: the workflow deployed and run, the execution read back."""

    async def scenario(ember: Ember) -> None:
        http = ember.http
        deployed = await http.put("/workflows/both", json=doc("both", [{"wait_both": {
            "listen": {"read": "envelope", "to": {"all": joined("42")}}}}]))
        assert deployed.status_code == 201, deployed.text
        async with brokers(ember) as (mqtt, redis):
            started = await http.post("/workflows/both/executions", json={})
            assert started.status_code == 201, started.text
            at = f"/executions/{started.json()['id']}"

            async def is_waiting() -> bool:
                return bool((await http.get(at)).json()["status"] == "waiting")

            await until_true(is_waiting, message="the execution waiting")
            await mqtt.publish({"order": "7"})  # another order: its filter stays open
            await published(ember, mqtt.name, 1)
            assert (await http.get(at)).json()["status"] == "waiting"
            await mqtt.publish({"order": "42"})
            await record(redis, {"order": "42"})
            done = (await http.get(at, params={"wait_s": 60})).json()
            assert done["status"] == "succeeded", done["error"]
            message, entry = done["output"]
            assert (message["type"], message["data"]) == (MQTT_TYPE, {"order": "42"})
            assert message["embertrigger"] == mqtt.name
            assert entry["type"] == RECORD_TYPE and entry["embertrigger"] == redis.name
            assert entry["data"]["stream"] == redis.stream
            assert entry["data"]["fields"] == {"order": "42"}
            assert entry["id"] == f"{redis.stream}/{entry['data']['id']}"
            await published(ember, redis.name, 1)
            assert (await status(ember, mqtt.name))["invocations"] == 2
            assert (await status(ember, redis.name))["failures"] == 0

    run(scenario)


def test_schedule_on_all_starts_when_both_came(run: Run) -> None:
    async def scenario(ember: Ember) -> None:
        service = ember.services.workflows
        service.deploy_data("started", doc(
            "started", [{"count": {"set": {"got": "${ [.[].type] }"}}}],
            schedule={"on": {"all": joined("9")}}))
        async with brokers(ember) as (mqtt, redis):
            await mqtt.publish({"order": "9"})
            await published(ember, mqtt.name, 1)
            assert service.list_executions(workflow="started").items == []
            await record(redis, {"order": "9"})
            await published(ember, redis.name, 1)
            [execution] = await until(
                lambda: service.list_executions(workflow="started").items,
                message="an execution started")
            done = await service.get_execution(execution.id, wait_s=60)
            assert done.status == "succeeded", done.error
            assert done.output == {"got": [MQTT_TYPE, RECORD_TYPE]}

    run(scenario)


def test_an_http_trigger_to_the_bus_answers_202(run: Run) -> None:
    async def scenario(ember: Ember) -> None:
        service = ember.services.workflows
        created = await bus_trigger(ember, "hook", {"kind": "http", "path": "/hook",
                                                    "methods": ["POST", "PUT"]})
        assert (created["target"], created["function"], created["qualifier"]) == (
            "events", None, None)
        alone = await ember.http.post("/http/hook/a", json={"n": 1})
        assert alone.status_code == 202, alone.text
        assert alone.json() == {"id": alone.json()["id"], "retained": True, "duplicate": False,
                                "matched": {"executions": 0, "schedules": 0}}
        service.deploy_data("hooked", doc("hooked", [{"on_put": {"listen": {"to": {"one": {
            "with": {"type": "dev.ember.http.request", "data": {"method": "PUT"}}}}}}}]))
        execution = await waiting(ember, "hooked")
        taken = await ember.http.put("/http/hook/b", content=b"hello")
        assert taken.status_code == 202, taken.text
        assert taken.json()["matched"] == {"executions": 1, "schedules": 0}
        done = await service.get_execution(execution.id, wait_s=60)
        assert done.status == "succeeded", done.error
        [data] = done.output
        assert (data["path"], data["body"]) == ("/b", "hello")
        counted = await status(ember, "hook")
        assert (counted["events"], counted["invocations"], counted["failures"]) == (2, 2, 0)

    run(scenario)


def _fields(answer: Any) -> set[str]:
    assert answer.status_code == 400, answer.text
    return {e["field"] for e in answer.json()["error"]["details"]["errors"]}


def test_target_rules(run: Run) -> None:
    async def scenario(ember: Ember) -> None:
        await ember.deploy("fn", "def handler(event, context):\n    return event\n")
        source = {"kind": "http", "path": "/rules"}
        post = ember.http.post
        with_fn = await post("/triggers", json={
            "name": "t", "target": "events", "function": "fn", "source": source})
        assert _fields(with_fn) == {"function"}
        with_qualifier = await post("/triggers", json={
            "name": "t", "target": "events", "qualifier": "1", "source": source})
        assert _fields(with_qualifier) == {"qualifier"}
        without_fn = await post("/triggers", json={"name": "t", "source": source})
        assert _fields(without_fn) == {"function"}
        unknown = await post("/triggers", json={
            "name": "t", "target": "queue", "source": source})
        assert _fields(unknown) == {"target"}

        bus = await bus_trigger(ember, "bus", source)
        assert bus["target"] == "events" and bus["function"] is None
        fn = await post("/triggers", json={"name": "fn-t", "function": "fn",
                                           "source": {"kind": "http", "path": "/fn"}})
        assert fn.json()["target"] == "function" and fn.json()["qualifier"] == "latest"
        retarget = await ember.http.patch("/triggers/bus", json={"target": "function"})
        assert _fields(retarget) == {"target"}
        bind = await ember.http.patch("/triggers/bus", json={"function": "fn"})
        assert _fields(bind) == {"function"}
        same = await ember.http.patch("/triggers/bus", json={"target": "events",
                                                             "description": "the bus"})
        assert same.status_code == 200, same.text
        assert same.json()["description"] == "the bus"

        # An events trigger belongs to no function: deleting one leaves it.
        assert (await ember.http.delete("/functions/fn")).status_code == 200
        await ember.settle()
        listed = await ember.http.get("/triggers")
        assert [t["name"] for t in listed.json()["triggers"]] == ["bus"]

    run(scenario)


def _bus_source(kit: Any, publish: Publish | None) -> tuple[Any, SourceContext]:
    """A source of ``kit``'s kind, made as the supervisor makes it, with target events and
    ``publish`` as the event bus."""
    function = Function()  # never called: an events trigger publishes
    trigger = Trigger(name=kit.name, function=None, qualifier=None, source=kit.model(),
                      state="enabled", description="", created_at=0.0, updated_at=0.0,
                      target="events")
    context = SourceContext(trigger, SystemClock(), function.submit, function.invoke,
                            publish=publish)
    return make_source(trigger, context), context


def test_a_redis_batch_is_published_record_by_record_in_order() -> None:
    async def scenario() -> None:
        kit = RedisStreamKit()
        offered: list[str] = []
        fail_once = {"2"}

        async def publish(event: Event) -> PublishResult:
            n = event["data"]["fields"]["n"]
            offered.append(n)
            if n in fail_once:  # the second record fails once: the batch goes on from it
                fail_once.clear()
                raise FunctionError("the bus is unwell (test)")
            return PublishResult(event["id"], 0, 0, retained=True, duplicate=False)

        source, context = _bus_source(kit, publish)
        client = aioredis.from_url(REDIS_URL)
        try:
            ids = [str((await client.xadd(kit.stream, {"n": n})).decode())  # type: ignore[union-attr]
                   for n in "123"]
            await source.start()
            try:
                await until(lambda: context.status.details.get(kit.stream, {}).get(
                    "checkpoint") == ids[-1], message="the batch acknowledged")
            finally:
                await source.stop()
            assert await client.xpending(kit.stream, "ember") == {
                "pending": 0, "min": None, "max": None, "consumers": []}
        finally:
            await client.aclose()
            await kit.aclose()
        assert offered == ["1", "2", "2", "3"]
        assert (context.status.invocations, context.status.failures) == (3, 1)

    asyncio.run(scenario())


def test_a_publish_refused_counts_as_a_failure_and_is_given_up() -> None:
    async def scenario() -> None:
        refused: list[Event] = []

        async def publish(event: Event) -> PublishResult:
            refused.append(event)
            raise InvalidSpec("invalid spec: type: required (test)")

        _, context = _bus_source(MqttKit(), publish)
        event = context.event(type="mqtt.message", data={"n": 1})
        assert await context.submit_or_give_up(event, retry_delay_s=0) is False
        assert len(refused) == SUBMIT_TRIES
        assert (context.status.failures, context.status.dropped) == (SUBMIT_TRIES, 1)
        assert context.status.invocations == 0

    asyncio.run(scenario())


def test_a_bus_trigger_without_the_bus_is_unavailable() -> None:
    async def scenario() -> None:
        _, context = _bus_source(MqttKit(), None)
        with pytest.raises(ServiceUnavailable, match="event bus"):
            await context.submit(context.event(type="mqtt.message", data=1))

    asyncio.run(scenario())
