"""The MQTT source against the real Mosquitto on 127.0.0.1:1883 (EMBER_TEST_MQTT_URL): the
CloudEvent of each payload kind, wildcards, acknowledgement only after submit, pause keeping
messages in the persistent session, durability across a restart, and a broker that isn't
there. Also the payload decoding every broker source shares."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Callable, Coroutine
from contextlib import asynccontextmanager
from typing import Any
from urllib.parse import urlsplit

import aiomqtt
import pytest
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from ember.model.trigger import MqttSource
from ember.triggers.base import make_source
from ember.triggers.mqtt import MqttTriggerSource, client_id, event_data
from tests.triggers.helpers import (
    Submits,
    eventually,
    make_context,
    retrying,
    started,
    unique,
)

MQTT_URL = os.environ.get("EMBER_TEST_MQTT_URL", "mqtt://127.0.0.1:1883")
_HOST = urlsplit(MQTT_URL).hostname or "127.0.0.1"
_PORT = urlsplit(MQTT_URL).port or 1883


def run(scenario: Callable[[], Coroutine[Any, Any, None]]) -> None:
    asyncio.run(scenario())


@asynccontextmanager
async def publisher() -> AsyncIterator[aiomqtt.Client]:
    async with aiomqtt.Client(_HOST, _PORT, protocol=aiomqtt.ProtocolVersion.V5) as client:
        yield client


async def drop_session(name: str, topic: str) -> None:
    """End a trigger's persistent session on the broker: connect with its client id, a
    clean start and no session expiry."""
    async with aiomqtt.Client(_HOST, _PORT, identifier=client_id(name, topic),
                              protocol=aiomqtt.ProtocolVersion.V5, clean_start=True):
        pass


class Trigger:
    """An MQTT trigger on a topic of its own: its name, topic prefix and a source factory."""

    def __init__(self, filter_suffix: str = "#", **fields: Any) -> None:
        self.name = unique("mqtt")
        self.prefix = f"ember-test/{self.name}"
        self.topic = f"{self.prefix}/{filter_suffix}"
        self.model = MqttSource(kind="mqtt", url=MQTT_URL, topic=self.topic, **fields)

    def source(self, submits: Submits) -> tuple[MqttTriggerSource, Any]:
        context = make_context(self.name, self.model, submits)
        source = make_source(context.trigger, context)
        assert isinstance(source, MqttTriggerSource)
        return source, context


@asynccontextmanager
async def mqtt_trigger(filter_suffix: str = "#", **fields: Any) -> AsyncIterator[Trigger]:
    trigger = Trigger(filter_suffix, **fields)
    try:
        yield trigger
    finally:
        await drop_session(trigger.name, trigger.topic)


def test_each_payload_kind_becomes_a_cloud_event() -> None:
    async def scenario() -> None:
        async with mqtt_trigger() as trigger:
            submits = Submits()
            source, context = trigger.source(submits)
            async with started(source, context), publisher() as pub:
                csv = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
                csv.ContentType = "text/csv"
                await pub.publish(f"{trigger.prefix}/json", b'{"a": [1, 2]}', qos=1)
                await pub.publish(f"{trigger.prefix}/text", b"hello", qos=1)
                await pub.publish(f"{trigger.prefix}/bin", b"\xff\x00\x01", qos=1)
                await pub.publish(f"{trigger.prefix}/csv", b"1,2", qos=1, properties=csv)
                await eventually(lambda: len(submits.accepted) == 4)
                assert context.status.connected

            by_topic = {event["subject"]: (event, key) for event, key in submits.accepted}
            json_event, key = by_topic[f"{trigger.prefix}/json"]
            assert key is None  # MQTT QoS 1 has no stable message identity
            assert json_event["type"] == "dev.ember.mqtt.message"
            assert json_event["source"] == f"ember/triggers/{trigger.name}"
            assert json_event["specversion"] == "1.0"
            assert json_event["data"] == {"a": [1, 2]}
            assert json_event["datacontenttype"] == "application/json"
            assert json_event["mqtttopic"] == f"{trigger.prefix}/json"
            assert json_event["embertrigger"] == trigger.name
            text, _ = by_topic[f"{trigger.prefix}/text"]
            assert (text["data"], text["datacontenttype"]) == ("hello", "text/plain; charset=utf-8")
            binary, _ = by_topic[f"{trigger.prefix}/bin"]
            assert binary["data_base64"] == "/wAB" and "data" not in binary
            assert binary["datacontenttype"] == "application/octet-stream"
            labelled, _ = by_topic[f"{trigger.prefix}/csv"]
            assert (labelled["data"], labelled["datacontenttype"]) == ("1,2", "text/csv")
            assert context.status.events == 4
            assert context.status.invocations == 4
            assert not context.status.connected

    run(scenario)


def test_wildcards_select_the_topics() -> None:
    async def scenario() -> None:
        async with mqtt_trigger("+/temp") as trigger:
            submits = Submits()
            source, context = trigger.source(submits)
            async with started(source, context), publisher() as pub:
                for topic in ("kitchen/hum", "kitchen/temp", "a/b/temp", "hall/temp"):
                    await pub.publish(f"{trigger.prefix}/{topic}", topic.encode(), qos=1)
                await eventually(lambda: len(submits.accepted) == 2)
                await asyncio.sleep(0.2)
            assert submits.data() == ["kitchen/temp", "hall/temp"]

    run(scenario)


def test_a_failed_submit_is_not_acknowledged_and_comes_again() -> None:
    async def scenario() -> None:
        async with mqtt_trigger() as trigger:
            submits = Submits(fail=1)
            source, context = trigger.source(submits)
            async with started(source, context), publisher() as pub:
                await pub.publish(f"{trigger.prefix}/x", b'{"n": 1}', qos=1)
                await eventually(lambda: len(submits.accepted) == 1)
            assert len(submits.attempts) == 2  # the broker sent it again after reconnecting
            assert submits.data() == [{"n": 1}]
            assert context.status.failures == 1
            assert "the queue is down" in (context.status.last_error or "")

            # It was acknowledged once submitted: a new session start brings nothing back.
            again = Submits()
            source, context = trigger.source(again)
            async with started(source, context):
                await asyncio.sleep(0.3)
            assert again.attempts == []

    run(scenario)


def test_pause_keeps_messages_in_the_session_and_resume_drains_them() -> None:
    async def scenario() -> None:
        async with mqtt_trigger() as trigger:
            submits = Submits()
            source, context = trigger.source(submits)
            async with started(source, context), publisher() as pub:
                await pub.publish(f"{trigger.prefix}/x", b"1", qos=1)
                await eventually(lambda: submits.data() == [1])
                await source.pause()
                await eventually(lambda: not context.status.connected, what="disconnect")
                for n in (2, 3, 4):
                    await pub.publish(f"{trigger.prefix}/x", str(n).encode(), qos=1)
                await asyncio.sleep(0.3)
                assert submits.data() == [1]
                await source.resume()
                await eventually(lambda: submits.data() == [1, 2, 3, 4])
                assert context.status.connected

    run(scenario)


def test_messages_published_while_stopped_arrive_after_a_restart() -> None:
    async def scenario() -> None:
        async with mqtt_trigger() as trigger:
            first = Submits()
            source, context = trigger.source(first)
            async with started(source, context):
                pass  # the session and its subscription now exist on the broker
            assert not context.status.connected
            async with publisher() as pub:
                for n in range(5):
                    await pub.publish(f"{trigger.prefix}/n", str(n).encode(), qos=1)
            second = Submits()
            source, context = trigger.source(second)
            async with started(source, context):
                await eventually(lambda: len(second.accepted) == 5)
            assert second.data() == [0, 1, 2, 3, 4]
            assert first.attempts == []

    run(scenario)


def test_a_broker_that_is_not_there_is_retried_without_crashing() -> None:
    async def scenario() -> None:
        model = MqttSource(kind="mqtt", url="mqtt://127.0.0.1:1", topic="x/#")
        submits = Submits()
        context = make_context(unique("mqtt"), model, submits)
        source = make_source(context.trigger, context)
        async with started(source, context, connected=False):
            await eventually(lambda: context.status.failures >= 2, what="two failures")
            assert not context.status.connected
            assert context.status.last_error
            assert retrying(source)

    run(scenario)


def test_the_client_id_is_stable_and_follows_the_topic() -> None:
    assert client_id("orders", "a/#") == client_id("orders", "a/#")
    assert client_id("orders", "a/#").startswith("ember-orders-")
    assert client_id("orders", "a/#") != client_id("orders", "b/#")


@pytest.mark.parametrize(("body", "content_type", "expected"), [
    (b'{"a": 1}', None, {"data": {"a": 1}, "datacontenttype": "application/json"}),
    (b"42", None, {"data": 42, "datacontenttype": "application/json"}),
    (b"hello", None, {"data": "hello", "datacontenttype": "text/plain; charset=utf-8"}),
    (b"", None, {"data": "", "datacontenttype": "text/plain; charset=utf-8"}),
    (b"\xff", None, {"data_base64": "/w==", "datacontenttype": "application/octet-stream"}),
    (b'{"a": 1}', "application/cloudevents+json; charset=utf-8",
     {"data": {"a": 1}, "datacontenttype": "application/cloudevents+json; charset=utf-8"}),
    (b"not json", "application/json",
     {"data": "not json", "datacontenttype": "text/plain; charset=utf-8"}),
    (b"42", "text/plain", {"data": "42", "datacontenttype": "text/plain"}),
    (b"\xe9t\xe9", "text/plain; charset=latin-1",
     {"data_base64": "6XTp", "datacontenttype": "text/plain; charset=latin-1"}),
    (b"{}", "image/png", {"data_base64": "e30=", "datacontenttype": "image/png"}),
])
def test_event_data_by_content_type(body: bytes, content_type: str | None,
                                    expected: dict[str, Any]) -> None:
    assert event_data(body, content_type) == expected
