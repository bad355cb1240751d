"""MQTT trigger source: messages on a topic filter (``+`` and ``#`` wildcards) each invoke the
function asynchronously.

Delivery is at least once with ``qos`` 1, the default. The source connects with MQTT 5 in a
persistent session (clean start off, a session expiry of ``session_expiry_s``) under a client
id derived from the trigger's name and topic filter, so the broker keeps the QoS 1 messages
that arrive while Ember is down, the trigger is paused or the connection is lost, and sends
them on the next connect. A message is acknowledged (PUBACK) only once ``context.submit`` has
durably queued its invocation. When submit fails the message is left unacknowledged and the
source reconnects after a backoff, which makes the broker send it again; a message that meets
a permanent error (too large, its function missing: see ``triggers.base``) is tried 3 times,
then given up — acknowledged, logged and counted in ``status.dropped``. MQTT gives a QoS 1
message no stable identity, so a message redelivered after a crash between submit and PUBACK
runs twice (no idempotency key).

``qos`` 0 is at most once: nothing is kept while disconnected. ``qos`` 2 is subscribed at
QoS 1, because its handshake acknowledges a message before the application sees it; with 1
the acknowledgement can wait for the durable submit. The broker's own limits apply to what a
session keeps (Mosquitto: ``max_queued_messages``, 1000 by default).

Pause disconnects, and the session keeps queueing; resume reconnects with the same client id
and drains what accumulated. Retained messages are sent once, when the subscription is made,
not again at every reconnect. Changing the topic filter changes the client id, so the old
subscription's session expires on the broker instead of feeding the new one.

The helpers ``event_data`` and ``until_paused`` are shared by the AMQP and NATS sources.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import ssl
from typing import TYPE_CHECKING
from urllib.parse import unquote, urlsplit

from ember.triggers.base import (
    BackgroundSource,
    SourceContext,
    cannot_connect,
    event_data,
    until_paused,
)

if TYPE_CHECKING:
    import aiomqtt

    from ember.model.trigger import MqttSource

log = logging.getLogger(__name__)


def client_id(trigger_name: str, topic: str) -> str:
    """The stable MQTT client id of a trigger's session: its name and its topic filter."""
    digest = hashlib.sha256(topic.encode()).hexdigest()[:8]
    return f"ember-{trigger_name}-{digest}"


class MqttTriggerSource(BackgroundSource):
    """Consumes an MQTT topic filter in a persistent session; see the module docstring."""

    session_expiry_s = 7 * 86400
    """How long the broker keeps the session (and queues messages) while Ember is away."""

    def __init__(self, context: SourceContext) -> None:
        super().__init__(context)
        source = context.trigger.source
        if source.kind != "mqtt":
            raise ValueError(f"not an mqtt trigger: {source.kind}")
        self.source: MqttSource = source
        self.client_id = client_id(context.trigger.name, source.topic)

    async def run(self) -> None:
        import aiomqtt

        await self.running.wait()
        client = self._client()
        async with contextlib.AsyncExitStack() as stack:
            try:
                await stack.enter_async_context(client)
            except aiomqtt.MqttError as exc:
                raise cannot_connect("the MQTT broker", self.source.url, exc) from exc
            await self._subscribe(client)
            self.context.status.connected = True
            self.context.status.details.update(client_id=self.client_id)
            try:
                while True:
                    message = await until_paused(self, client.messages.__anext__())
                    if message is None:
                        return  # paused: disconnect; the session keeps what arrives
                    await self._deliver(client, message)
            finally:
                self.context.status.connected = False

    def _client(self) -> aiomqtt.Client:
        import aiomqtt
        from paho.mqtt.packettypes import PacketTypes
        from paho.mqtt.properties import Properties

        url = urlsplit(self.source.url)
        if url.scheme not in ("mqtt", "mqtts") or not url.hostname:
            raise ValueError(f"MQTT url must be mqtt://host:port or mqtts://host:port, "
                             f"not {url.scheme}://{url.hostname or ''}")
        tls = url.scheme == "mqtts"
        properties = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
        properties.SessionExpiryInterval = self.session_expiry_s
        client = aiomqtt.Client(
            url.hostname, url.port or (8883 if tls else 1883),
            identifier=self.client_id,
            username=unquote(url.username) if url.username else None,
            password=unquote(url.password) if url.password else None,
            protocol=aiomqtt.ProtocolVersion.V5,
            clean_start=False,
            properties=properties,
            tls_context=ssl.create_default_context() if tls else None,
            timeout=10,
        )
        # Acknowledge after the durable submit, not when paho hands the message over.
        client._client.manual_ack_set(True)
        return client

    async def _subscribe(self, client: aiomqtt.Client) -> None:
        from paho.mqtt.subscribeoptions import SubscribeOptions

        options = SubscribeOptions(
            qos=min(self.source.qos, 1),
            retainHandling=SubscribeOptions.RETAIN_SEND_IF_NEW_SUB,
        )
        granted = await client.subscribe(self.source.topic, options=options)
        for code in granted:
            if getattr(code, "is_failure", False):
                raise ConnectionError(f"subscribe to {self.source.topic!r} refused: {code}")

    async def _deliver(self, client: aiomqtt.Client, message: aiomqtt.Message) -> None:
        self.context.received()
        payload = message.payload  # always bytes when received; typed wider for publish
        body = bytes(payload) if isinstance(payload, bytes | bytearray) else str(payload).encode()
        content_type = getattr(message.properties, "ContentType", None)
        event = self.context.event(
            type="mqtt.message", subject=message.topic.value,
            extensions={"mqtttopic": message.topic.value, "mqttretain": message.retain},
            **event_data(body, content_type),
        )
        # Raises on a passing failure: no PUBACK, and reconnecting makes the broker send it
        # again. A message given up is acknowledged like one queued, so that it stays away.
        await self.context.submit_or_give_up(event, idempotency_key=None)
        client._client.ack(message.mid, message.qos)
