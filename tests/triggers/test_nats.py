"""The NATS source against the real NATS server with JetStream on 127.0.0.1:4222
(EMBER_TEST_NATS_URL): through a durable JetStream consumer, the CloudEvent of each payload
kind and its idempotency key, acknowledgement only after submit (a failed submit is
redelivered), pause keeping messages in the stream, the durable consumer resuming across a
restart; core NATS at most once; and a server that isn't there."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Callable, Coroutine
from contextlib import asynccontextmanager, suppress
from typing import Any

import nats
from nats.aio.client import Client as NatsClient
from nats.js import JetStreamContext

from ember.model.trigger import NatsSource
from ember.triggers.base import make_source
from ember.triggers.nats import NatsTriggerSource
from tests.triggers.helpers import (
    Submits,
    eventually,
    make_context,
    retrying,
    started,
    unique,
)

NATS_URL = os.environ.get("EMBER_TEST_NATS_URL", "nats://127.0.0.1:4222")


def run(scenario: Callable[[], Coroutine[Any, Any, None]]) -> None:
    asyncio.run(scenario())


class Server:
    """A test's own subject and stream names, a client to publish and inspect with, and the
    source factory."""

    def __init__(self, client: NatsClient) -> None:
        self.client = client
        self.js: JetStreamContext = client.jetstream()
        self.name = unique("nats")
        self.prefix = f"ember.test.{self.name}"
        self.stream = f"EMBER_TEST_{self.name.replace('-', '_')}"

    def source(self, submits: Submits, **fields: Any) -> tuple[NatsTriggerSource, Any]:
        fields.setdefault("subject", f"{self.prefix}.>")
        model = NatsSource(kind="nats", url=NATS_URL, **fields)
        context = make_context(self.name, model, submits)
        source = make_source(context.trigger, context)
        assert isinstance(source, NatsTriggerSource)
        return source, context

    def durable(self, submits: Submits, **fields: Any) -> tuple[NatsTriggerSource, Any]:
        return self.source(submits, stream=self.stream, **fields)

    async def publish(self, subject: str, body: bytes,
                      headers: dict[str, str] | None = None) -> None:
        await self.js.publish(f"{self.prefix}.{subject}", body, headers=headers)


@asynccontextmanager
async def server() -> AsyncIterator[Server]:
    client = await nats.connect(NATS_URL)
    test = Server(client)
    try:
        yield test
    finally:
        with suppress(nats.js.errors.NotFoundError):
            await test.js.delete_stream(test.stream)
        await client.close()


def test_each_payload_kind_becomes_a_cloud_event_with_a_stable_key() -> None:
    async def scenario() -> None:
        async with server() as test:
            submits = Submits()
            source, context = test.durable(submits)
            async with started(source, context):
                await test.publish("json", b'{"a": 1}')
                await test.publish("text", b"hello")
                await test.publish("bin", b"\xff\x00")
                await test.publish("csv", b"1,2", headers={"Content-Type": "text/csv"})
                await eventually(lambda: len(submits.accepted) == 4)
                assert context.status.connected

            info = await test.js.stream_info(test.stream)
            assert info.config.subjects == [f"{test.prefix}.>"]
            assert info.created is not None
            created = int(info.created.timestamp())
            by_subject = {event["subject"]: (event, key) for event, key in submits.accepted}
            event, key = by_subject[f"{test.prefix}.json"]
            assert key == f"nats:{test.stream}:{created}:1"
            assert event["id"] == key
            assert event["type"] == "dev.ember.nats.message"
            assert event["source"] == f"ember/triggers/{test.name}"
            assert event["data"] == {"a": 1}
            assert event["natssubject"] == f"{test.prefix}.json"
            assert event["natsstream"] == test.stream
            assert event["natsseq"] == 1
            assert event["natsdelivered"] == 1
            text, _ = by_subject[f"{test.prefix}.text"]
            assert (text["data"], text["datacontenttype"]) == ("hello", "text/plain; charset=utf-8")
            binary, _ = by_subject[f"{test.prefix}.bin"]
            assert binary["data_base64"] == "/wA="
            labelled, _ = by_subject[f"{test.prefix}.csv"]
            assert (labelled["data"], labelled["datacontenttype"]) == ("1,2", "text/csv")
            assert sorted(e["natsseq"] for e in submits.events) == [1, 2, 3, 4]
            assert context.status.events == 4 and context.status.invocations == 4
            assert not context.status.connected
            # Every message was acknowledged.
            consumer = await test.js.consumer_info(test.stream, f"ember-{test.name}")
            assert (consumer.num_ack_pending, consumer.num_pending) == (0, 0)

    run(scenario)


def test_a_failed_submit_is_redelivered_under_the_same_key() -> None:
    async def scenario() -> None:
        async with server() as test:
            submits = Submits(fail=1)
            source, context = test.durable(submits)
            async with started(source, context):
                await test.publish("x", b'{"n": 1}')
                await test.publish("x", b'{"n": 2}')
                await eventually(lambda: len(submits.accepted) == 2)
            assert submits.data() == [{"n": 1}, {"n": 2}]
            (first, first_key), (again, again_key) = submits.attempts[:2]
            assert first_key == again_key
            assert (first["natsdelivered"], again["natsdelivered"]) == (1, 2)
            assert context.status.failures == 1

    run(scenario)


def test_pause_stops_fetching_and_resume_drains_the_stream() -> None:
    async def scenario() -> None:
        async with server() as test:
            submits = Submits()
            source, context = test.durable(submits)
            async with started(source, context):
                await test.publish("x", b"1")
                await eventually(lambda: submits.data() == [1])
                await source.pause()
                for n in (2, 3, 4):
                    await test.publish("x", str(n).encode())
                await asyncio.sleep(source.fetch_timeout_s + 0.3)
                assert submits.data() == [1]
                assert context.status.connected  # the connection stays; only fetching stops
                await source.resume()
                await eventually(lambda: submits.data() == [1, 2, 3, 4])

    run(scenario)


def test_the_durable_consumer_resumes_after_a_restart() -> None:
    async def scenario() -> None:
        async with server() as test:
            first = Submits()
            source, context = test.durable(first, durable=f"custom-{test.name}")
            async with started(source, context):
                await test.publish("x", b"0")
                await eventually(lambda: first.data() == [0])
            # A pull request the stopped source left on the server lives until its expiry;
            # a message it takes then is redelivered only after the ack wait (30 s).
            await asyncio.sleep(source.fetch_timeout_s)
            for n in range(1, 6):
                await test.publish("x", str(n).encode())
            second = Submits()
            source, context = test.durable(second, durable=f"custom-{test.name}")
            async with started(source, context):
                await eventually(lambda: len(second.accepted) == 5)
            assert second.data() == [1, 2, 3, 4, 5]
            consumer = await test.js.consumer_info(test.stream, f"custom-{test.name}")
            assert consumer.config.durable_name == f"custom-{test.name}"

    run(scenario)


def test_an_existing_stream_is_used_and_the_consumer_starts_at_new_messages() -> None:
    async def scenario() -> None:
        async with server() as test:
            await test.js.add_stream(name=test.stream, subjects=[f"{test.prefix}.>"])
            await test.publish("old", b"before the trigger")
            submits = Submits()
            source, context = test.durable(submits, subject=f"{test.prefix}.new")
            async with started(source, context):
                await test.publish("other", b"not my subject")
                await test.publish("new", b"after")
                await eventually(lambda: len(submits.accepted) == 1)
                await asyncio.sleep(0.2)
            assert submits.data() == ["after"]

    run(scenario)


def test_core_nats_is_at_most_once() -> None:
    async def scenario() -> None:
        async with server() as test:
            submits = Submits()
            source, context = test.source(submits)
            async with started(source, context):
                await test.client.publish(f"{test.prefix}.a", b'{"n": 1}')
                await eventually(lambda: submits.data() == [{"n": 1}])
                assert submits.accepted[0][1] is None  # no identity: no key
                assert submits.events[0]["natssubject"] == f"{test.prefix}.a"

                await source.pause()
                await eventually(lambda: not context.status.connected, what="disconnect")
                await test.client.publish(f"{test.prefix}.a", b'{"n": 2}')  # not kept
                await test.client.flush()
                await source.resume()
                await eventually(lambda: context.status.connected)
                await test.client.publish(f"{test.prefix}.a", b'{"n": 3}')
                await eventually(lambda: len(submits.accepted) == 2)
            assert submits.data() == [{"n": 1}, {"n": 3}]

    run(scenario)


def test_a_server_that_is_not_there_is_retried_without_crashing() -> None:
    async def scenario() -> None:
        model = NatsSource(kind="nats", url="nats://127.0.0.1:1", subject="x", stream="S")
        context = make_context(unique("nats"), model, Submits())
        source = make_source(context.trigger, context)
        async with started(source, context, connected=False):
            await eventually(lambda: context.status.failures >= 2, what="two failures")
            assert not context.status.connected
            assert context.status.last_error
            assert retrying(source)

    run(scenario)


def test_a_deleted_consumer_is_made_again() -> None:
    async def scenario() -> None:
        async with server() as test:
            submits = Submits()
            source, context = test.durable(submits)
            source.consumer_check_s = 0.1
            async with started(source, context):
                await test.js.delete_consumer(test.stream, f"ember-{test.name}")
                await eventually(lambda: context.status.failures == 1, what="the failure")
                await eventually(lambda: context.status.connected)
                await test.publish("x", b"1")
                await eventually(lambda: submits.data() == [1])
            assert "is gone" in (context.status.last_error or "")

    run(scenario)
