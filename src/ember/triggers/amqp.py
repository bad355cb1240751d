"""AMQP 0-9-1 (RabbitMQ) trigger source: messages in a durable queue each invoke the function
asynchronously.

Delivery is at least once. The source declares its queue (durable, when missing) and binds it
to each binding's exchange and routing key (a missing exchange is declared as a durable topic
exchange), so messages wait in the queue while Ember is down or the trigger is paused. At most
``prefetch`` messages are unacknowledged at a time. A message is acknowledged only once
``context.submit`` has durably queued its invocation; when submit fails it is rejected with
requeue and the source reconnects after a backoff. A message that meets a permanent error
(too large, its function missing: see ``triggers.base``) is tried 3 times, then given up:
rejected without requeue, which makes RabbitMQ drop it, or dead-letter it when the queue has a
dead-letter exchange (``x-dead-letter-exchange``); the reason is logged and
``status.dropped`` counts it. A message with a ``message_id`` property is submitted with the
idempotency key ``amqp:{queue}:{message_id}`` (its SHA-256 when longer than 256 characters),
so one redelivered after a crash between submit and ack runs once; without one it may run
twice.

Pause cancels the consumer by closing the channel and connection: every unacknowledged message,
prefetched ones included, goes back to the queue, and resume drains it.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Literal

from ember.triggers.base import (
    BackgroundSource,
    SourceContext,
    bounded_key,
    cannot_connect,
    event_data,
    until_paused,
)

if TYPE_CHECKING:
    from aio_pika.abc import (
        AbstractChannel,
        AbstractConnection,
        AbstractIncomingMessage,
        AbstractQueue,
    )

    from ember.model.trigger import AmqpSource

log = logging.getLogger(__name__)


class AmqpTriggerSource(BackgroundSource):
    """Consumes one durable AMQP queue; see the module docstring."""

    connect_timeout_s = 10.0

    def __init__(self, context: SourceContext) -> None:
        super().__init__(context)
        source = context.trigger.source
        if source.kind != "amqp":
            raise ValueError(f"not an amqp trigger: {source.kind}")
        self.source: AmqpSource = source

    async def run(self) -> None:
        import aio_pika

        await self.running.wait()
        try:
            connection = await aio_pika.connect(
                self.source.url, timeout=self.connect_timeout_s,
                client_properties={"connection_name": f"ember-{self.context.trigger.name}"},
            )
        except (OSError, aio_pika.exceptions.AMQPError) as exc:
            raise cannot_connect("the AMQP broker", self.source.url, exc) from exc
        async with connection:
            inbox: asyncio.Queue[AbstractIncomingMessage | BaseException] = asyncio.Queue()

            def closed(_sender: object, exc: BaseException | None = None) -> None:
                inbox.put_nowait(ConnectionError(f"AMQP connection closed: {exc or 'no reason'}"))

            connection.close_callbacks.add(closed)
            channel = await connection.channel()
            channel.close_callbacks.add(closed)
            await channel.set_qos(prefetch_count=self.source.prefetch)
            queue = await self._declare(connection, channel)
            await queue.consume(inbox.put)
            # The broker cancels the consumer when the queue goes (deleted, or its node lost):
            # reconnecting declares it again, where staying would consume nothing.
            underlay = await channel.get_underlay_channel()
            underlay.on_consumer_cancel_callbacks.add(
                lambda frame: inbox.put_nowait(ConnectionError(
                    f"the broker cancelled the consumer of queue {self.source.queue!r}")),
            )
            self.context.status.connected = True
            try:
                while True:
                    item = await until_paused(self, inbox.get())
                    if item is None:
                        return  # paused: closing the channel puts unacked messages back
                    if isinstance(item, BaseException):
                        raise item
                    await self._deliver(item)
            finally:
                self.context.status.connected = False

    async def _declare(
        self, connection: AbstractConnection, channel: AbstractChannel,
    ) -> AbstractQueue:
        """The queue, declared durable when missing and bound to each binding's exchange.
        What already exists is used as it is (its type and arguments are the operator's)."""
        from aio_pika import ExchangeType

        name = self.source.queue
        if await _exists(connection, "queue", name):
            queue = await channel.declare_queue(name, passive=True)
        else:
            queue = await channel.declare_queue(name, durable=True)
        for binding in self.source.bindings:
            if not binding.exchange:
                raise ValueError("an AMQP binding needs an exchange; the default one takes none")
            if await _exists(connection, "exchange", binding.exchange):
                exchange = await channel.get_exchange(binding.exchange, ensure=False)
            else:
                exchange = await channel.declare_exchange(
                    binding.exchange, ExchangeType.TOPIC, durable=True,
                )
            await queue.bind(exchange, routing_key=binding.routing_key)
        return queue

    async def _deliver(self, message: AbstractIncomingMessage) -> None:
        self.context.received()
        timestamp = message.timestamp.timestamp() if message.timestamp else None
        event = self.context.event(
            type="amqp.message", subject=message.routing_key, id=message.message_id,
            time=timestamp,
            extensions={
                "amqpexchange": message.exchange or "",
                "amqproutingkey": message.routing_key or "",
                "amqpqueue": self.source.queue,
                "amqpredelivered": bool(message.redelivered),
            },
            **event_data(message.body, message.content_type),
        )
        key = (bounded_key(f"amqp:{self.source.queue}:{message.message_id}")
               if message.message_id else None)
        try:
            queued = await self.context.submit_or_give_up(event, idempotency_key=key)
        except BaseException:
            await _release(message)
            raise
        if queued:
            await message.ack()
        else:
            await message.reject(requeue=False)


async def _exists(
    connection: AbstractConnection, kind: Literal["queue", "exchange"], name: str,
) -> bool:
    """Whether the queue or exchange ``name`` exists: a passive declare, on a channel of its
    own since a failing one closes its channel."""
    from aio_pika.exceptions import ChannelNotFoundEntity

    channel = await connection.channel()
    try:
        if kind == "queue":
            await channel.declare_queue(name, passive=True)
        else:
            await channel.declare_exchange(name, passive=True)
    except ChannelNotFoundEntity:
        return False
    finally:
        if not channel.is_closed:
            await channel.close()
    return True


async def _release(message: AbstractIncomingMessage) -> None:
    """Put ``message`` back in its queue; if that fails the closing channel does it."""
    try:
        await message.nack(requeue=True)
    except Exception as exc:  # the channel is going down anyway: it requeues on close
        log.debug("nack failed: %s", exc)
