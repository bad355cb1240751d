"""NATS trigger source: messages on a subject (``*`` and ``>`` wildcards) each invoke the
function asynchronously.

With ``stream`` set, delivery is at least once through JetStream. The source makes the stream
when it is missing (subjects ``[subject]``, file storage) and a durable pull consumer named
``durable`` or ``ember-{trigger}`` (explicit acks, filtered on ``subject``; a new consumer
starts at messages published after it is made, an existing one where it left off). Messages
wait in the stream while Ember is down or the trigger is paused. The source fetches batches of
``batch_size``; a message is acknowledged only once ``context.submit`` has durably queued its
invocation. When submit fails, it and the rest of its batch are negatively acknowledged
(redelivered) and the source reconnects after a backoff; a message that meets a permanent
error (too large, its function missing: see ``triggers.base``) is tried 3 times, then given
up: terminated (``AckTerm``: JetStream never delivers it again), logged and counted in
``status.dropped``. Each message is submitted with the idempotency key
``nats:{stream}:{created}:{sequence}`` (``created``: the stream's creation time in seconds,
so a re-made stream's sequences are new keys; its SHA-256 when longer than 256 characters):
a message redelivered after a
crash between submit and ack runs once. A message fetched but not acknowledged when the
source dies, or one a pull request left by a stopped source takes in the second before it
expires (``fetch_timeout_s``), comes again after the consumer's ack wait (30 s by default).
A deleted consumer is noticed within ``consumer_check_s`` and made again. Pause stops fetching
and hands back what was fetched but not yet submitted; the connection stays open; resume
fetches again.

Without ``stream``, the source is a plain core NATS subscription: at most once. Messages
published while Ember is down, the trigger is paused or the connection is lost are not kept,
and a message whose submit fails is dropped (recorded as a failure and in
``status.dropped``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import TYPE_CHECKING, Any

from ember.triggers.base import (
    BackgroundSource,
    SourceContext,
    bounded_key,
    cannot_connect,
    event_data,
    until_paused,
)

if TYPE_CHECKING:
    from nats.aio.client import Client as NatsClient
    from nats.aio.msg import Msg
    from nats.js import JetStreamContext

    from ember.model.trigger import NatsSource

log = logging.getLogger(__name__)


class NatsTriggerSource(BackgroundSource):
    """Consumes a NATS subject, through a durable JetStream consumer when ``stream`` is set;
    see the module docstring."""

    batch_size = 10
    fetch_timeout_s = 1.0
    consumer_check_s = 10.0
    """While idle, how often to check that the durable consumer still exists."""
    connect_timeout_s = 5

    def __init__(self, context: SourceContext) -> None:
        super().__init__(context)
        source = context.trigger.source
        if source.kind != "nats":
            raise ValueError(f"not a nats trigger: {source.kind}")
        self.source: NatsSource = source
        self.durable = source.durable or f"ember-{context.trigger.name}"

    async def run(self) -> None:
        import nats
        import nats.errors

        await self.running.wait()
        closed = asyncio.Event()
        errors: list[Exception] = []

        async def on_closed() -> None:
            closed.set()

        async def on_error(exc: Exception) -> None:
            errors.append(exc)
            log.debug("trigger %s: NATS: %s", self.context.trigger.name, exc)

        # nats-py reconnecting on its own would hide a lost connection from the status;
        # BackgroundSource reconnects with backoff instead. (nats-py tries a server at least
        # twice, and max_reconnect_attempts=0 would mean without end.)
        try:
            client = await nats.connect(
                self.source.url, name=f"ember-{self.context.trigger.name}",
                allow_reconnect=False, max_reconnect_attempts=1, reconnect_time_wait=0,
                connect_timeout=self.connect_timeout_s,
                error_cb=on_error, closed_cb=on_closed,
            )
        except nats.errors.NoServersError:
            cause = errors[-1] if errors else None
            raise cannot_connect("NATS", self.source.url, cause or "no server") from cause
        try:
            if self.source.stream:
                await self._consume_stream(client, self.source.stream, closed)
            else:
                await self._consume_core(client)
        finally:
            self.context.status.connected = False
            if not client.is_closed:
                await client.close()

    # -- JetStream: at least once ------------------------------------------------------------

    async def _consume_stream(self, client: NatsClient, stream: str, closed: asyncio.Event) -> None:
        js = client.jetstream()
        created = await self._ensure_stream(js, stream)
        await self._ensure_consumer(js, stream)
        pull = await js.pull_subscribe_bind(durable=self.durable, stream=stream)
        self.context.status.connected = True
        self.context.status.details.update(stream=stream, consumer=self.durable)
        try:
            await self._fetch_forever(pull, created, closed)
        finally:
            # A pull request may still wait on the server: once it has seen the inbox go,
            # it stops delivering to it. Otherwise a message published in the moment before
            # the server notices the closed connection would wait out the ack wait (30 s).
            with contextlib.suppress(Exception):
                await pull.unsubscribe()
                await client.flush(timeout=1)

    async def _fetch_forever(
        self, pull: JetStreamContext.PullSubscription, created: int, closed: asyncio.Event,
    ) -> None:
        import nats.errors

        clock = self.context.clock
        checked = clock.monotonic()
        while True:
            if self.paused.is_set():
                await self._until_resumed(closed)
                continue
            try:
                batch = await pull.fetch(self.batch_size, timeout=self.fetch_timeout_s)
            except nats.errors.TimeoutError:
                if closed.is_set():
                    raise ConnectionError("NATS connection closed") from None
                if clock.monotonic() - checked >= self.consumer_check_s:
                    # Fetching from a consumer that was deleted just times out: look.
                    checked = clock.monotonic()
                    await self._check_consumer(pull)
                continue
            for i, msg in enumerate(batch):
                try:
                    if self.paused.is_set():
                        await _hand_back(batch[i:])
                        break
                    await self._deliver_stream(msg, created)
                except BaseException:
                    # Submit failed or the source stops: what is left goes back now rather
                    # than after the consumer's ack wait.
                    await _hand_back(batch[i:])
                    raise

    async def _check_consumer(self, pull: JetStreamContext.PullSubscription) -> None:
        """Raise ConnectionError when the durable consumer is gone, so that reconnecting
        makes it again; note its backlog in the status."""
        from nats.js.errors import NotFoundError

        try:
            info = await pull.consumer_info()
        except NotFoundError as exc:
            raise ConnectionError(f"the consumer {self.durable!r} is gone") from exc
        self.context.status.details.update(pending=info.num_pending)

    async def _ensure_stream(self, js: JetStreamContext, stream: str) -> int:
        """Make the stream when it is missing; returns its creation time in seconds."""
        from nats.js.errors import NotFoundError

        try:
            info = await js.stream_info(stream)
        except NotFoundError:
            info = await js.add_stream(name=stream, subjects=[self.source.subject])
        return int(info.created.timestamp()) if info.created else 0

    async def _ensure_consumer(self, js: JetStreamContext, stream: str) -> None:
        """Make the durable pull consumer, or point an existing one at the trigger's subject."""
        from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
        from nats.js.errors import NotFoundError

        try:
            info = await js.consumer_info(stream, self.durable)
        except NotFoundError:
            config = ConsumerConfig(
                durable_name=self.durable, name=self.durable,
                deliver_policy=DeliverPolicy.NEW, ack_policy=AckPolicy.EXPLICIT,
                filter_subject=self.source.subject,
            )
        else:
            if info.config.filter_subject == self.source.subject:
                return
            config = info.config
            config.filter_subject = self.source.subject
        await js.add_consumer(stream, config)

    async def _until_resumed(self, closed: asyncio.Event) -> None:
        resumed = asyncio.ensure_future(self.running.wait())
        gone = asyncio.ensure_future(closed.wait())
        try:
            await asyncio.wait((resumed, gone), return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiter in (resumed, gone):
                waiter.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await waiter
        if closed.is_set():
            raise ConnectionError("NATS connection closed")

    async def _deliver_stream(self, msg: Msg, created: int) -> None:
        self.context.received()
        meta = msg.metadata
        seq = meta.sequence.stream
        key = bounded_key(f"nats:{meta.stream}:{created}:{seq}")
        event = self.context.event(
            type="nats.message", subject=msg.subject, id=key,
            time=meta.timestamp.timestamp() if meta.timestamp else None,
            extensions={
                "natssubject": msg.subject, "natsstream": meta.stream, "natsseq": seq,
                "natsdelivered": meta.num_delivered,
            },
            **_data(msg),
        )
        if await self.context.submit_or_give_up(event, idempotency_key=key):
            await msg.ack()
        else:
            await msg.term()

    # -- core NATS: at most once -------------------------------------------------------------

    async def _consume_core(self, client: NatsClient) -> None:
        import nats.errors

        subscription = await client.subscribe(self.source.subject)
        # The SUB waits in the client's buffer until flushed: until the server has it, what is
        # published is not this subscription's (and core NATS keeps nothing).
        await client.flush(timeout=self.connect_timeout_s)
        self.context.status.connected = True
        while True:
            try:
                msg = await until_paused(self, subscription.next_msg(timeout=self.fetch_timeout_s))
            except nats.errors.TimeoutError:
                continue  # next_msg raises ConnectionClosedError once the connection is gone
            if msg is None:
                return  # paused: what is published until resume is not kept
            self.context.received()
            event = self.context.event(
                type="nats.message", subject=msg.subject,
                extensions={"natssubject": msg.subject}, **_data(msg),
            )
            try:
                await self.context.submit(event, idempotency_key=None)
            except Exception as exc:  # nothing can take the message back: count it and go on
                self.context.failed(exc)
                self.context.status.dropped += 1
                log.warning("trigger %s: dropped a NATS message: %s",
                            self.context.trigger.name, exc)


def _data(msg: Msg) -> dict[str, Any]:
    headers = msg.headers or {}
    return event_data(msg.data, headers.get("Content-Type") or headers.get("content-type"))


async def _hand_back(messages: list[Msg]) -> None:
    """Negatively acknowledge ``messages`` so JetStream redelivers them at once; any that
    cannot be are redelivered after the consumer's ack wait."""
    for msg in messages:
        try:
            await msg.nak()
        except Exception as exc:  # the connection is going; the ack wait covers these
            log.debug("nak failed: %s", exc)
            return
