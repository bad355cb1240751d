"""The AMQP source against the real RabbitMQ on 127.0.0.1:5672 (EMBER_TEST_AMQP_URL): the
CloudEvent of each payload kind, bindings (a missing exchange declared, an existing one used),
prefetch, acknowledgement only after submit (a failed submit requeues), pause keeping messages
in the queue, durability across a restart, and a broker that isn't there."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Callable, Coroutine
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any

import aio_pika
from aio_pika.abc import AbstractChannel

from ember.model.trigger import AmqpBinding, AmqpSource
from ember.triggers.amqp import AmqpTriggerSource
from ember.triggers.base import MAX_KEY, bounded_key, make_source
from tests.triggers.helpers import (
    Submits,
    eventually,
    make_context,
    retrying,
    started,
    unique,
)

AMQP_URL = os.environ.get("EMBER_TEST_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/")


def run(scenario: Callable[[], Coroutine[Any, Any, None]]) -> None:
    asyncio.run(scenario())


class Broker:
    """A test's own queue and exchange names, a channel to publish and inspect with, and
    the source factory."""

    def __init__(self, channel: AbstractChannel) -> None:
        self.channel = channel
        self.name = unique("amqp")
        self.queue = f"ember-test-{self.name}"
        self.exchange = f"ember-test-{self.name}"

    def source(self, submits: Submits, **fields: Any) -> tuple[AmqpTriggerSource, Any]:
        fields.setdefault("bindings", [AmqpBinding(exchange=self.exchange, routing_key="#")])
        model = AmqpSource(kind="amqp", url=AMQP_URL, queue=self.queue, **fields)
        context = make_context(self.name, model, submits)
        source = make_source(context.trigger, context)
        assert isinstance(source, AmqpTriggerSource)
        return source, context

    async def publish(self, routing_key: str, body: bytes, exchange: str | None = None,
                      **properties: Any) -> None:
        target = await self.channel.get_exchange(exchange or self.exchange, ensure=False)
        await target.publish(aio_pika.Message(body, **properties), routing_key=routing_key)

    async def ready(self) -> int:
        """Messages in the queue waiting for a consumer (not those delivered, unacked)."""
        queue = await self.channel.declare_queue(self.queue, passive=True)
        count = queue.declaration_result.message_count
        assert count is not None
        return count


@asynccontextmanager
async def broker() -> AsyncIterator[Broker]:
    connection = await aio_pika.connect(AMQP_URL)
    async with connection:
        channel = await connection.channel(publisher_confirms=True)
        test = Broker(channel)
        try:
            yield test
        finally:
            await channel.queue_delete(test.queue)
            await channel.exchange_delete(test.exchange)


async def wait_ready(test: Broker, count: int) -> None:
    """Wait until the queue holds ``count`` ready messages."""
    deadline = asyncio.get_running_loop().time() + 5
    while await test.ready() != count:
        assert asyncio.get_running_loop().time() < deadline, f"queue never held {count}"
        await asyncio.sleep(0.05)


def test_each_payload_kind_becomes_a_cloud_event_through_the_bindings() -> None:
    async def scenario() -> None:
        async with broker() as test:
            submits = Submits()
            bindings = [AmqpBinding(exchange=test.exchange, routing_key="orders.*"),
                        AmqpBinding(exchange="amq.topic", routing_key=f"{test.name}.#")]
            source, context = test.source(submits, bindings=bindings)
            async with started(source, context):
                sent = datetime(2024, 1, 15, 12, 0, 0, tzinfo=UTC)
                await test.publish("orders.new", b'{"id": 7}', content_type="application/json",
                                   message_id="m-1", timestamp=sent)
                await test.publish("orders.text", b"hello", content_type="text/plain")
                await test.publish("orders.bin", b"\xff\x00")
                await test.publish("other.thing", b"not bound")
                await test.publish(f"{test.name}.x", b"[1]", exchange="amq.topic")
                await eventually(lambda: len(submits.accepted) == 4)
                await asyncio.sleep(0.1)

            by_key = {event["subject"]: (event, key) for event, key in submits.accepted}
            assert set(by_key) == {"orders.new", "orders.text", "orders.bin", f"{test.name}.x"}
            event, key = by_key["orders.new"]
            assert key == f"amqp:{test.queue}:m-1"
            assert event["id"] == "m-1"
            assert event["type"] == "dev.ember.amqp.message"
            assert event["source"] == f"ember/triggers/{test.name}"
            assert event["time"] == "2024-01-15T12:00:00Z"
            assert event["data"] == {"id": 7}
            assert event["datacontenttype"] == "application/json"
            assert event["amqpexchange"] == test.exchange
            assert event["amqproutingkey"] == "orders.new"
            assert event["amqpqueue"] == test.queue
            assert event["amqpredelivered"] is False
            text, key = by_key["orders.text"]
            # aiormq gives every message a random message_id; its key follows it.
            assert key == f"amqp:{test.queue}:{text['id']}"
            assert (text["data"], text["datacontenttype"]) == ("hello", "text/plain")
            binary, _ = by_key["orders.bin"]
            assert binary["data_base64"] == "/wA="
            assert binary["datacontenttype"] == "application/octet-stream"
            other, _ = by_key[f"{test.name}.x"]
            assert (other["data"], other["amqpexchange"]) == ([1], "amq.topic")
            assert context.status.events == 4 and context.status.invocations == 4
            assert not context.status.connected
            # The source declared the missing exchange as a durable topic exchange.
            exchange = await test.channel.declare_exchange(
                test.exchange, aio_pika.ExchangeType.TOPIC, durable=True, passive=True)
            assert exchange.name == test.exchange

    run(scenario)


def test_prefetch_bounds_the_unacknowledged_messages() -> None:
    async def scenario() -> None:
        async with broker() as test:
            submits = Submits()
            submits.gate = asyncio.Event()
            source, context = test.source(submits, prefetch=2)
            async with started(source, context):
                for n in range(5):
                    await test.publish("k", str(n).encode())
                await eventually(lambda: len(submits.attempts) == 1)
                await wait_ready(test, 3)  # 2 delivered and unacked, 3 still in the queue
                submits.gate.set()
                await eventually(lambda: len(submits.accepted) == 5)
                await wait_ready(test, 0)
            assert submits.data() == [0, 1, 2, 3, 4]

    run(scenario)


def test_a_failed_submit_requeues_the_message() -> None:
    async def scenario() -> None:
        async with broker() as test:
            submits = Submits(fail=1)
            source, context = test.source(submits)
            async with started(source, context):
                await test.publish("k", b'{"n": 1}', message_id="once")
                await eventually(lambda: len(submits.accepted) == 1)
                await wait_ready(test, 0)
            (first, first_key), (second, second_key) = submits.attempts
            assert first_key == second_key == f"amqp:{test.queue}:once"
            assert (first["amqpredelivered"], second["amqpredelivered"]) == (False, True)
            assert submits.data() == [{"n": 1}]
            assert context.status.failures == 1

    run(scenario)


def test_a_long_message_id_gives_a_key_the_queue_takes() -> None:
    """AMQP allows a 255-character message id; with the queue's name the key would pass the
    queue's 256 characters (InvalidSpec at every try): it is hashed, the same each time."""

    async def scenario() -> None:
        async with broker() as test:
            submits = Submits(fail=1)
            source, context = test.source(submits)
            async with started(source, context):
                await test.publish("k", b'{"n": 1}', message_id="m" * 255)
                await eventually(lambda: len(submits.accepted) == 1)
            (_, first_key), (_, second_key) = submits.attempts
            assert first_key == second_key
            assert first_key is not None and len(first_key) <= MAX_KEY
            assert first_key == bounded_key(f"amqp:{test.queue}:{'m' * 255}")

    run(scenario)


def test_pause_leaves_messages_in_the_queue_and_resume_drains_them() -> None:
    async def scenario() -> None:
        async with broker() as test:
            submits = Submits()
            source, context = test.source(submits)
            async with started(source, context):
                await test.publish("k", b"1")
                await eventually(lambda: submits.data() == [1])
                await source.pause()
                await eventually(lambda: not context.status.connected, what="disconnect")
                for n in (2, 3, 4):
                    await test.publish("k", str(n).encode())
                await wait_ready(test, 3)
                assert submits.data() == [1]
                await source.resume()
                await eventually(lambda: submits.data() == [1, 2, 3, 4])
                assert context.status.connected

    run(scenario)


def test_pause_hands_back_prefetched_messages() -> None:
    async def scenario() -> None:
        async with broker() as test:
            submits = Submits()
            submits.gate = asyncio.Event()
            source, context = test.source(submits, prefetch=5)
            async with started(source, context):
                for n in range(4):
                    await test.publish("k", str(n).encode())
                await eventually(lambda: len(submits.attempts) == 1)
                await wait_ready(test, 0)  # all four prefetched
                await source.pause()
                submits.gate.set()  # the one in hand completes; the rest go back
                await wait_ready(test, 3)
                assert submits.data() == [0]
                await source.resume()
                await eventually(lambda: submits.data() == [0, 1, 2, 3])

    run(scenario)


def test_messages_published_while_stopped_arrive_after_a_restart() -> None:
    async def scenario() -> None:
        async with broker() as test:
            first = Submits()
            source, context = test.source(first)
            async with started(source, context):
                pass  # the queue and its binding now exist
            for n in range(5):
                await test.publish("k", str(n).encode())
            second = Submits()
            source, context = test.source(second)
            async with started(source, context):
                await eventually(lambda: len(second.accepted) == 5)
            assert second.data() == [0, 1, 2, 3, 4]
            assert first.attempts == []

    run(scenario)


def test_a_broker_that_is_not_there_is_retried_without_crashing() -> None:
    async def scenario() -> None:
        model = AmqpSource(kind="amqp", url="amqp://guest:guest@127.0.0.1:1/", queue="q")
        context = make_context(unique("amqp"), model, Submits())
        source = make_source(context.trigger, context)
        async with started(source, context, connected=False):
            await eventually(lambda: context.status.failures >= 2, what="two failures")
            assert not context.status.connected
            assert context.status.last_error
            assert retrying(source)

    run(scenario)


def test_an_existing_queue_is_used_as_it_is() -> None:
    async def scenario() -> None:
        async with broker() as test:
            # Declared by an operator with arguments the source would not give it: a plain
            # durable declare would be refused (PRECONDITION_FAILED).
            await test.channel.declare_queue(test.queue, durable=False,
                                             arguments={"x-max-length": 100})
            await test.channel.declare_exchange(test.exchange, aio_pika.ExchangeType.DIRECT)
            submits = Submits()
            source, context = test.source(
                submits, bindings=[AmqpBinding(exchange=test.exchange, routing_key="k")])
            async with started(source, context):
                await test.publish("k", b"1")
                await eventually(lambda: submits.data() == [1])

    run(scenario)


def test_a_deleted_queue_is_declared_again() -> None:
    async def scenario() -> None:
        async with broker() as test:
            submits = Submits()
            source, context = test.source(submits)
            async with started(source, context):
                await test.channel.queue_delete(test.queue)  # the broker cancels the consumer
                await eventually(lambda: context.status.failures == 1, what="the failure")
                await eventually(lambda: context.status.connected)
                await test.publish("k", b"1")
                await eventually(lambda: submits.data() == [1])
            assert "cancelled the consumer" in (context.status.last_error or "")

    run(scenario)
