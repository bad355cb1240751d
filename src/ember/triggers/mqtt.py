"""MQTT trigger source: messages on a topic filter (``+`` and ``#`` wildcards) each invoke the
function asynchronously.

Delivery is at least once with ``qos`` 1, the default. The source connects with MQTT 5 in a
persistent session (clean start off, a session expiry of ``session_expiry_s``) under a client
id derived from the trigger's name and topic filter, so the broker keeps the QoS 1 messages
that arrive while Ember is down, the trigger is paused or the connection is lost, and sends
them on the next connect. A message is acknowledged (PUBACK) only once ``context.submit`` has
durably queued its invocation. When submit fails the message is left unacknowledged and the
source reconnects after a backoff, which makes the broker send it again. MQTT gives a QoS 1
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

import asyncio
import base64
import contextlib
import hashlib
import inspect
import logging
import ssl
from collections.abc import Awaitable
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import unquote, urlsplit

import orjson

from ember.triggers.base import BackgroundSource, SourceContext

if TYPE_CHECKING:
    import aiomqtt

    from ember.model.trigger import MqttSource

log = logging.getLogger(__name__)

T = TypeVar("T")

_TEXT = "text/plain; charset=utf-8"
_BINARY = "application/octet-stream"
_JSON = "application/json"


def event_data(body: bytes, content_type: str | None = None) -> dict[str, Any]:
    """The ``data`` (or ``data_base64``) and ``datacontenttype`` keyword arguments of
    ``SourceContext.event`` for a message body.

    A JSON content type (``application/json``, ``…+json``) or, without a content type, a body
    that parses as JSON gives the parsed value; a ``text/*`` content type or an unlabelled
    UTF-8 body gives text; anything else is carried base64-encoded in ``data_base64``."""
    kind = (content_type or "").split(";", 1)[0].strip().lower()
    labelled_json = kind == _JSON or kind.endswith("+json")
    if not kind or labelled_json:
        with contextlib.suppress(orjson.JSONDecodeError):
            return {"data": orjson.loads(body), "datacontenttype": content_type or _JSON}
    if not kind or labelled_json or kind.startswith("text/"):
        with contextlib.suppress(UnicodeDecodeError):
            text = body.decode("utf-8")
            return {"data": text,
                    "datacontenttype": content_type if kind.startswith("text/") else _TEXT}
    return {"data_base64": base64.b64encode(body).decode("ascii"),
            "datacontenttype": content_type or _BINARY}


async def until_paused(source: BackgroundSource, step: Awaitable[T]) -> T | None:
    """``step``'s result, or None once ``source`` is paused first (``step`` is cancelled).

    A result that is ready when the pause comes is still returned: the caller has taken it
    off the broker and must deliver or release it. A ``step`` cancelled by someone else (a
    client library closing) raises ConnectionError, so that the source reconnects instead of
    ending."""
    if source.paused.is_set():
        if inspect.iscoroutine(step):
            step.close()
        return None
    task = asyncio.ensure_future(step)
    pause = asyncio.ensure_future(source.paused.wait())
    try:
        done, _ = await asyncio.wait((task, pause), return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiter in (task, pause):
            if not waiter.done():
                waiter.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await waiter
    if task not in done:
        return None
    if task.cancelled():
        raise ConnectionError("the client library cancelled a wait for the next message")
    return task.result()


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
        await self.running.wait()
        client = self._client()
        async with client:
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
        # Raises on failure: no PUBACK, and reconnecting makes the broker send it again.
        await self.context.submit(event, idempotency_key=None)
        client._client.ack(message.mid, message.qos)
