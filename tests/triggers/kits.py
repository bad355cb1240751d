"""One kit per trigger source kind for the source contract suite (test_source_contract.py):
the source's model, a way to publish a message carrying a JSON value, how to read the values
back out of the CloudEvent the function gets, and the cleanup. Brokers are the real servers
on 127.0.0.1 (EMBER_TEST_{MQTT,AMQP,NATS,REDIS}_URL). A kit's source delivers to a function
(target ``function``) or, made with target ``events``, publishes on the event bus."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager, suppress
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import orjson

from ember.clock import Clock, ManualClock, SystemClock
from ember.errors import EmberError
from ember.model.trigger import (
    AmqpBinding,
    AmqpSource,
    HttpSource,
    MqttSource,
    NatsSource,
    RedisStreamSource,
    StorageSource,
    TimerSource,
    Trigger,
)
from ember.model.workflow import Execution
from ember.triggers.base import Source, SourceContext, make_source
from ember.triggers.timer import Schedule
from ember.workflows.events import PublishResult
from tests.triggers.helpers import eventually, unique

MQTT_URL = os.environ.get("EMBER_TEST_MQTT_URL", "mqtt://127.0.0.1:1883")
AMQP_URL = os.environ.get("EMBER_TEST_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/")
NATS_URL = os.environ.get("EMBER_TEST_NATS_URL", "nats://127.0.0.1:4222")
REDIS_URL = os.environ.get("EMBER_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")

Event = dict[str, Any]


class Function:
    """A fake function behind every delivery path (``submit``, ``invoke``, the event bus's
    ``publish`` and a workflow's ``run_workflow``): records every attempt and every event it
    took; ``refuse`` picks the error an event gets (None: taken)."""

    def __init__(self) -> None:
        self.attempts: list[Event] = []
        self.events: list[Event] = []
        self.refuse: Callable[[Event], EmberError | None] = lambda event: None

    async def publish(self, event: Event) -> PublishResult:
        self._record(event)
        return PublishResult(event["id"], 0, 0, retained=True, duplicate=False)

    async def run_workflow(self, name: str, input: Any = None, *,
                           idempotency_key: str | None = None,
                           wait_s: float | None = None) -> tuple[Execution, bool]:
        self._record(input)
        now = datetime.now(UTC)
        return Execution(f"ex-{len(self.events)}", name, 1, "running", input, now, now,
                         idempotency_key=idempotency_key), True

    async def _take(self, body: bytes) -> None:
        self._record(orjson.loads(body))

    def _record(self, event: Event) -> None:
        self.attempts.append(event)
        error = self.refuse(event)
        if error is not None:
            raise error
        self.events.append(event)

    async def submit(self, trigger: Trigger, body: bytes, key: str | None) -> str:
        await self._take(body)
        return f"task-{len(self.events)}"

    async def invoke(self, trigger: Trigger, body: bytes) -> Any:
        await self._take(body)
        return {"ok": True}


class Kit:
    """How the contract drives one kind of source."""

    kind = ""
    type = ""
    """The CloudEvent type, without the ``dev.ember.`` prefix."""
    extensions: frozenset[str] = frozenset()
    """Extension attributes every event of the kind carries (besides ``embertrigger``)."""
    durable = True
    """Messages published while no source runs wait for the next one."""
    redelivers = True
    """A message whose submit failed comes again (at least once)."""

    publishes = True
    """Whether the contract can make events of this kind (HTTP answers requests instead)."""

    def __init__(self) -> None:
        self.name = unique(self.kind.replace("_", "-"))
        self.clock: Clock = SystemClock()
        self.target = "function"

    def to_events(self, target: str = "events") -> None:
        """Make sources with target ``events`` (or ``workflow``: both take an event where a
        function would take a batch) from now on."""
        self.target = target

    def model(self) -> Any:
        raise NotImplementedError

    def unreachable(self) -> Any:
        """A model whose broker (or directory) is not there."""
        raise NotImplementedError

    async def publish(self, value: Any) -> None:
        raise NotImplementedError

    def values(self, event: Event) -> list[Any]:
        """The published values an event carries, in order."""
        return [event["data"]]

    async def live(self, context: SourceContext) -> None:
        """Wait until the source takes what is published from now on."""
        await eventually(lambda: context.status.connected, what="connected")

    async def idle(self, context: SourceContext) -> None:
        """After ``pause()``: wait until what is published from now on is no longer taken
        (kept by the broker, or lost where nothing keeps it)."""

    async def aclose(self) -> None:
        pass

    def source(self, function: Function, model: Any = None) -> tuple[Source, SourceContext]:
        """A source made as the supervisor makes it, delivering to ``function`` (or, with
        target ``events``, publishing to it; with target ``workflow``, starting it)."""
        bound = self.target == "function"
        trigger = Trigger(
            name=self.name, function="fn" if bound else None,
            qualifier="latest" if bound else None,
            source=model if model is not None else self.model(), state="enabled",
            description="", created_at=0.0, updated_at=0.0,
            target="workflow" if self.target == "workflow" else "function" if bound
            else "events",
            workflow="flow" if self.target == "workflow" else None,
        )
        context = SourceContext(trigger, self.clock, function.submit, function.invoke,
                                publish=function.publish, run_workflow=function.run_workflow)
        return make_source(trigger, context), context


class MqttKit(Kit):
    kind = "mqtt"
    type = "mqtt.message"
    extensions = frozenset({"mqtttopic", "mqttretain"})

    def __init__(self) -> None:
        super().__init__()
        self.prefix = f"ember-test/{self.name}"
        self.topic = f"{self.prefix}/#"

    def model(self) -> MqttSource:
        return MqttSource(kind="mqtt", url=MQTT_URL, topic=self.topic)

    def unreachable(self) -> MqttSource:
        return MqttSource(kind="mqtt", url="mqtt://127.0.0.1:1", topic=self.topic)

    def _client(self, **options: Any) -> Any:
        import aiomqtt

        url = urlsplit(MQTT_URL)
        return aiomqtt.Client(url.hostname or "127.0.0.1", url.port or 1883,
                              protocol=aiomqtt.ProtocolVersion.V5, **options)

    async def publish(self, value: Any) -> None:
        async with self._client() as client:
            await client.publish(f"{self.prefix}/m", orjson.dumps(value), qos=1)

    async def aclose(self) -> None:
        # End the trigger's persistent session on the broker.
        from ember.triggers.mqtt import client_id

        async with self._client(identifier=client_id(self.name, self.topic), clean_start=True):
            pass


class AmqpKit(Kit):
    kind = "amqp"
    type = "amqp.message"
    extensions = frozenset({"amqpexchange", "amqproutingkey", "amqpqueue", "amqpredelivered"})

    def __init__(self) -> None:
        super().__init__()
        self.queue = f"ember-test-{self.name}"
        self.exchange = f"ember-test-{self.name}"
        self._connection: Any = None

    def model(self) -> AmqpSource:
        return AmqpSource(kind="amqp", url=AMQP_URL, queue=self.queue,
                          bindings=[AmqpBinding(exchange=self.exchange)])

    def unreachable(self) -> AmqpSource:
        return AmqpSource(kind="amqp", url="amqp://guest:guest@127.0.0.1:1/", queue=self.queue)

    async def _channel(self) -> Any:
        import aio_pika

        if self._connection is None:
            self._connection = await aio_pika.connect(AMQP_URL)
        return await self._connection.channel(publisher_confirms=True)

    async def publish(self, value: Any) -> None:
        import aio_pika

        channel = await self._channel()
        exchange = await channel.get_exchange(self.exchange, ensure=False)
        await exchange.publish(aio_pika.Message(orjson.dumps(value)), routing_key="m")
        await channel.close()

    async def aclose(self) -> None:
        if self._connection is None:
            return
        channel = await self._channel()
        await channel.queue_delete(self.queue)
        await channel.exchange_delete(self.exchange)
        await self._connection.close()


class NatsKit(Kit):
    """NATS through a durable JetStream consumer."""

    kind = "nats"
    type = "nats.message"
    extensions = frozenset({"natssubject", "natsstream", "natsseq", "natsdelivered"})

    def __init__(self) -> None:
        super().__init__()
        self.prefix = f"ember.test.{self.name}"
        self.stream: str | None = f"EMBER_TEST_{self.name.replace('-', '_')}"
        self._client: Any = None

    def model(self) -> NatsSource:
        return NatsSource(kind="nats", url=NATS_URL, subject=f"{self.prefix}.>",
                          stream=self.stream)

    def unreachable(self) -> NatsSource:
        return NatsSource(kind="nats", url="nats://127.0.0.1:1", subject=f"{self.prefix}.>",
                          stream=self.stream)

    async def _connected(self) -> Any:
        import nats

        if self._client is None:
            self._client = await nats.connect(NATS_URL)
        return self._client

    async def publish(self, value: Any) -> None:
        client = await self._connected()
        if self.stream:
            await client.jetstream().publish(f"{self.prefix}.m", orjson.dumps(value))
        else:
            await client.publish(f"{self.prefix}.m", orjson.dumps(value))
            await client.flush()

    async def aclose(self) -> None:
        import nats.js.errors

        client = await self._connected()
        if self.stream:
            with suppress(nats.js.errors.NotFoundError):
                await client.jetstream().delete_stream(self.stream)
        await client.close()


class CoreNatsKit(NatsKit):
    """A plain NATS subscription: at most once."""

    kind = "nats_core"
    extensions = frozenset({"natssubject"})
    durable = False
    redelivers = False

    def __init__(self) -> None:
        super().__init__()
        self.stream = None

    async def idle(self, context: SourceContext) -> None:
        # Pausing unsubscribes: nothing is kept until the subscription is made again.
        await eventually(lambda: not context.status.connected, what="unsubscribed")


class RedisStreamKit(Kit):
    kind = "redis_stream"
    type = "redis_stream.batch"
    extensions = frozenset({"emberstream", "emberfirstid", "emberlastid"})

    def __init__(self) -> None:
        super().__init__()
        self.stream = f"ember-test-{self.name}"
        self._client: Any = None

    def model(self) -> RedisStreamSource:
        return RedisStreamSource(kind="redis_stream", url=REDIS_URL, streams=[self.stream],
                                 batch_window_ms=0)

    def unreachable(self) -> RedisStreamSource:
        return RedisStreamSource(kind="redis_stream", url="redis://127.0.0.1:1/0",
                                 streams=[self.stream])

    def _redis(self) -> Any:
        import redis.asyncio as aioredis

        if self._client is None:
            self._client = aioredis.from_url(REDIS_URL)
        return self._client

    def to_events(self, target: str = "events") -> None:
        # Each record is an event of its own.
        super().to_events(target)
        self.type = "redis_stream.record"
        self.extensions = frozenset({"emberstream"})

    async def publish(self, value: Any) -> None:
        await self._redis().xadd(self.stream, {"body": orjson.dumps(value)})

    def values(self, event: Event) -> list[Any]:
        data = event["data"]
        records = data.get("records", [data])
        return [orjson.loads(r["fields"]["body"]) for r in records]

    async def aclose(self) -> None:
        client = self._redis()
        await client.delete(self.stream, f"{self.stream}:dead")
        await client.aclose()


class StorageKit(Kit):
    """Files created in a directory; a value is published as the file ``{value}.json``."""

    kind = "storage"
    type = "storage.created"
    extensions = frozenset({"emberpath"})
    durable = False
    redelivers = False

    def __init__(self, root: Path) -> None:
        super().__init__()
        self.root = root / self.name
        self.root.mkdir(parents=True)

    def model(self) -> StorageSource:
        return StorageSource(kind="storage", path=str(self.root), events=["created"])

    def unreachable(self) -> StorageSource:
        return StorageSource(kind="storage", path=str(self.root / "missing"))

    async def publish(self, value: Any) -> None:
        staged = self.root.parent / f"{self.name}-{value}.tmp"
        staged.write_bytes(orjson.dumps(value))
        await asyncio.to_thread(os.replace, staged, self.root / f"{value}.json")

    def values(self, event: Event) -> list[Any]:
        return [orjson.loads(Path(event["data"]["path"]).read_bytes())]

    async def live(self, context: SourceContext) -> None:
        await eventually(lambda: context.status.details.get("watching") is True,
                         what="watching")

    async def idle(self, context: SourceContext) -> None:
        await eventually(lambda: context.status.details.get("watching") is False,
                         what="not watching")


class TimerKit(Kit):
    """A timer on a manual clock: publishing a value moves the clock to the next tick, and
    the event of that tick carries the value."""

    kind = "timer"
    type = "timer.tick"
    extensions = frozenset({"embertick"})
    durable = False
    redelivers = False

    def __init__(self) -> None:
        super().__init__()
        self.manual = ManualClock(start=1_700_000_000)
        self.clock = self.manual
        self._by_tick: dict[int, Any] = {}

    def model(self) -> TimerSource:
        return TimerSource(kind="timer", schedule="rate(1 minute)")

    async def publish(self, value: Any) -> None:
        tick = Schedule(self.model()).next_after(self.manual.time())
        self._by_tick[tick] = value
        self.manual.advance(tick - self.manual.time())

    def values(self, event: Event) -> list[Any]:
        return [self._by_tick[int(datetime.fromisoformat(event["time"]).timestamp())]]


class HttpKit(Kit):
    """An HTTP route: its requests come through the API (tests/triggers/test_api.py)."""

    kind = "http"
    type = "http.request"
    publishes = False

    def model(self) -> HttpSource:
        return HttpSource(kind="http", path=f"/{self.name}")


BROKERS = ("mqtt", "amqp", "nats", "nats_core", "redis_stream", "storage")
"""The kinds whose events come from outside: every part of the contract applies."""
PUBLISHING = (*BROKERS, "timer")
"""The kinds the contract can make events of."""
ALL = (*PUBLISHING, "http")
REDELIVERING = ("mqtt", "amqp", "nats")
"""The kinds that submit and redeliver what could not be submitted."""


TARGETS = ("function", "events", "workflow")


def kit(kind: str, tmp_path: Path, target: str = "function"
        ) -> AbstractAsyncContextManager[Kit]:
    """The kit of ``kind``, its sources with ``target``, cleaned up after the block."""
    makers: dict[str, Callable[[], Kit]] = {
        "mqtt": MqttKit, "amqp": AmqpKit, "nats": NatsKit, "nats_core": CoreNatsKit,
        "redis_stream": RedisStreamKit, "storage": lambda: StorageKit(tmp_path),
        "timer": TimerKit, "http": HttpKit,
    }

    @asynccontextmanager
    async def opened() -> AsyncIterator[Kit]:
        made = makers[kind]()
        if target != "function":
            made.to_events(target)
        try:
            yield made
        finally:
            await made.aclose()

    return opened()
