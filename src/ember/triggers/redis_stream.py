"""The Redis streams trigger: each stream is a shard, consumed in order through a consumer
group, in batches delivered synchronously and checkpointed (XACK) once the function
succeeded.

Guarantees:

- **In order per stream.** One task per stream reads a batch, invokes the function with it
  (``context.invoke``, which returns once the function ran) and acknowledges it before it
  reads the next one. Streams run in parallel, with no order between them.
- **At least once per batch.** A batch is acknowledged only after the function returned,
  in one XACK; a crash, a stop or a lost connection between the invocation and the XACK
  delivers the whole batch again. Every delivery of the same records carries the same
  event id (``{stream}/{first id}/{last id}``), so a handler can deduplicate.
- **Restart from the checkpoint.** The consumer name is fixed per trigger
  (``ember-{trigger}``): a new source first re-reads, in order, the records it was given and
  never acknowledged (the group's pending entries for that consumer), then new ones. The
  group is created at id ``0`` (with MKSTREAM), so records already in a stream are
  processed too.
- **One node at a time.** With several nodes, the whole trigger — every stream of it, each
  a shard — runs on the node holding the trigger's lease (``ember.cluster.leases``): one
  lease per trigger rather than per stream, which keeps each stream on one consumer and is
  enough to spread triggers across nodes. When that node dies (even with ``kill -9``,
  mid-batch) the node taking the lease over starts under the same consumer name, so it
  first re-reads, in order, the batch the dead node was running and never acknowledged,
  then goes on: per-stream order holds across a takeover, and that batch may run twice
  (at least once, as above).

Batches: up to ``batch_size`` records; the first record is waited for, then more are
collected for up to ``batch_window_ms`` or until the batch is full. Re-read pending records
are delivered as they come, without waiting. A pending record deleted from the stream
(XDEL, trimming) is acknowledged without being delivered.

Failures: a batch whose invocation fails is tried again up to ``max_retries`` times,
0.1 s apart and doubling up to 5 s, then handled by ``on_failure``: ``stop`` stops the
shard at that batch (its records stay pending; ``resume()`` or a restart tries it again),
``dead_letter`` adds every record of the batch to the stream ``{stream}:dead`` (fields
``stream``, ``id``, ``fields`` as JSON, ``error``, ``code``, ``trigger``) and acknowledges
it, in one transaction, and goes on. Two kinds of errors are not the records' fault and
never dead-letter them: when the platform cannot run the function right now
(``TooManyRequests``, ``ServiceUnavailable``, ``FunctionDisabled``) the batch waits and is
tried again without end and without counting against ``max_retries``; when the target does
not exist (``FunctionNotFound``, ``VersionNotFound``, ``AliasNotFound``,
``WorkflowNotFound``) the shard stops
whatever ``on_failure`` says. Redis errors are recorded and the shard reconnects with
backoff, starting again from its pending records.

Target ``events``: each record of a batch is published on the workflow event bus as an
event of its own (type ``dev.ember.redis_stream.record``, id ``{stream}/{record id}``, data
``{"stream", "id", "fields"}``), in order, and the batch is acknowledged once the last
one was published (stored). Target ``workflow`` alike: each record starts an execution of
its own, whose idempotency key derives from that id, so a record delivered again starts
nothing more. A batch tried again goes on from the record that failed; a
batch delivered again after a crash or reconnect publishes its records again with the same
ids. Failures are handled as above (a malformed event is a failure that counts against
``max_retries``).

Status: ``events`` counts records read from Redis (a redelivered record counts again),
``invocations`` and ``failures`` count attempts. ``details[stream]`` holds ``state``
(``starting``, ``running``, ``retrying``, ``waiting``, ``paused``, ``stopped``,
``reconnecting``), ``checkpoint`` (the last acknowledged id), ``pending`` and ``lag`` (the
group's delivered-but-unacknowledged and not-yet-delivered counts, refreshed about once a
second), and ``at`` / ``error`` for the batch that is failing or stopped the shard.
"""

from __future__ import annotations

import asyncio
import base64
import logging
from collections.abc import Awaitable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import orjson
import redis.asyncio as aioredis
from redis.exceptions import ResponseError

from ember.errors import (
    AliasNotFound,
    EmberError,
    FunctionDisabled,
    FunctionNotFound,
    ServiceUnavailable,
    TooManyRequests,
    VersionNotFound,
    WorkflowNotFound,
)
from ember.model.trigger import RedisStreamSource
from ember.queue.redis import _redact
from ember.triggers.base import BackgroundSource, SourceContext

log = logging.getLogger(__name__)

T = TypeVar("T")

# The longest single blocking read: a pause, a stop and a silent server are noticed within it.
_BLOCK_MS = 2_000
_SOCKET_TIMEOUT_S = 10.0
_RETRY_FIRST_S = 0.1
_RETRY_MAX_S = 5.0
_FIGURES_EVERY_S = 1.0

# The platform cannot run the function now: the batch waits (order forbids skipping it).
_WAIT_ERRORS: tuple[type[EmberError], ...] = (
    TooManyRequests, ServiceUnavailable, FunctionDisabled,
)
# The trigger points at nothing: dead-lettering every record until it is fixed would empty
# the stream for no fault of the records, so the shard stops instead.
_TARGET_ERRORS: tuple[type[EmberError], ...] = (
    FunctionNotFound, VersionNotFound, AliasNotFound, WorkflowNotFound,
)

Entry = tuple[bytes, dict[bytes, bytes]]


@dataclass
class _Shard:
    """One stream's consumer: its status entry and what wakes it after it stopped."""

    stream: str
    detail: dict[str, Any]
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    backoff_s: float = 0.0
    figures_at: float = float("-inf")


class RedisStreamTriggerSource(BackgroundSource):
    """Ordered batches from the Redis streams of a ``redis_stream`` trigger (see the module
    docstring for the guarantees). Raises TypeError when the trigger is of another kind."""

    def __init__(self, context: SourceContext) -> None:
        super().__init__(context)
        source = context.trigger.source
        if not isinstance(source, RedisStreamSource):
            raise TypeError(f"trigger {context.trigger.name} is not a redis_stream trigger")
        self.source = source
        self.consumer = f"ember-{context.trigger.name}"
        self._url = _redact(source.url)
        self._group = source.group.encode()
        # Not decoded: field values may be binary. Each blocking read holds a connection of
        # the pool, one per stream.
        self._client: aioredis.Redis = aioredis.from_url(
            source.url, socket_connect_timeout=5, socket_timeout=_SOCKET_TIMEOUT_S,
            health_check_interval=30,
        )
        self._shards: dict[str, _Shard] = {}
        for stream in dict.fromkeys(source.streams):
            detail: dict[str, Any] = {"state": "starting", "checkpoint": None, "pending": None,
                                      "lag": None, "at": None, "error": None}
            context.status.details[stream] = detail
            self._shards[stream] = _Shard(stream, detail, backoff_s=self.retry_initial_s)

    async def run(self) -> None:
        """Consume every stream in a task of its own until cancelled."""
        async with asyncio.TaskGroup() as group:
            for shard in self._shards.values():
                group.create_task(self._shard_forever(shard), name=f"redis-stream {shard.stream}")

    async def resume(self) -> None:
        """Take events again, and try again the batch each stopped shard stopped at."""
        await super().resume()
        for shard in self._shards.values():
            shard.wake.set()

    async def stop(self) -> None:
        """Cancel every shard (batches in flight stay pending, delivered again on the next
        start) and close the connections."""
        await super().stop()
        await self._client.aclose()

    # one shard ---------------------------------------------------------------------------

    async def _shard_forever(self, shard: _Shard) -> None:
        """Consume one stream; after a Redis error, back off and start again from the pending
        records; after a stop on a failed batch, wait for ``resume()``. Never raises."""
        while True:
            try:
                await self._consume(shard)
                _honour_cancel()
                await shard.wake.wait()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # a shard's loop must never end the source
                _honour_cancel()
                error = f"stream {shard.stream} on {self._url}: {exc}"
                self.context.status.connected = False
                self.context.failed(error)
                shard.detail.update(state="reconnecting", error=error)
                log.warning("trigger %s: %s; retrying in %.1f s", self.context.trigger.name,
                            error, shard.backoff_s)
                await self.context.clock.sleep(shard.backoff_s)
                shard.backoff_s = min(shard.backoff_s * 2, self.retry_max_s)

    async def _consume(self, shard: _Shard) -> None:
        """Read, deliver and checkpoint batches in order; return when the shard stopped."""
        await self._ensure_group(shard.stream)
        self.context.status.connected = True
        shard.detail.update(state="running", at=None, error=None)
        backlog = True  # our own pending records come first, from the start of the list
        while True:
            _honour_cancel()
            await self._unpaused(shard)
            if backlog:
                entries = await self._read(shard.stream, "0", self.source.batch_size, None)
                backlog = bool(entries)
            else:
                entries = await self._read_batch(shard.stream)
            shard.backoff_s = self.retry_initial_s
            if not entries:
                await self._figures(shard)
                continue
            if not await self._process(shard, entries):
                return

    async def _process(self, shard: _Shard, entries: list[Entry]) -> bool:
        """Deliver one batch and checkpoint it; False when the shard stopped at it."""
        records = [(_text(entry_id) or "", fields) for entry_id, fields in entries if fields]
        for _ in records:
            self.context.received()
        # Read while a pause began (a blocking read was under way): held until resume.
        await self._unpaused(shard)
        ids = [entry_id for entry_id, _ in entries]
        error = await self._deliver(shard, records) if records else None
        if error is None:
            await _redis(self._client.xack(shard.stream, self._group, *ids))
        elif isinstance(error, _TARGET_ERRORS) or self.source.on_failure == "stop":
            shard.wake.clear()  # before anything awaits: a resume() from now on wakes it
            await self._figures(shard, force=True)
            shard.detail.update(state="stopped", at=records[0][0], error=str(error))
            log.warning("trigger %s: stream %s stopped at %s: %s", self.context.trigger.name,
                        shard.stream, records[0][0], error)
            return False
        else:
            await self._dead_letter(shard, records, ids, error)
        shard.detail.update(state="running", checkpoint=_text(ids[-1]), at=None, error=None)
        await self._figures(shard)
        return True

    async def _deliver(
        self, shard: _Shard, records: list[tuple[str, dict[bytes, bytes]]]
    ) -> BaseException | None:
        """Invoke the function with the batch (or publish its records), trying again as the
        module docstring says; the error that ended the tries, or None once it succeeded."""
        stream = shard.stream
        first, last = records[0][0], records[-1][0]
        # The bus and a workflow take one event per record: each record is an event (or an
        # execution) of its own, with an id that a redelivery repeats.
        if not self.context.to_function:
            events = [self.context.event(
                type="redis_stream.record", subject=stream, id=f"{stream}/{rid}",
                data={"stream": stream, "id": rid, "fields": _fields(raw)},
                extensions={"emberstream": stream},
            ) for rid, raw in records]
        else:
            events = [self.context.event(
                type="redis_stream.batch", subject=stream, id=f"{stream}/{first}/{last}",
                data={"stream": stream,
                      "records": [{"id": rid, "fields": _fields(raw)} for rid, raw in records]},
                extensions={"emberstream": stream, "emberfirstid": first, "emberlastid": last},
            )]
        failures = 0
        delay = _RETRY_FIRST_S
        while True:
            _honour_cancel()
            try:
                # In order; the events already delivered are not sent again on a retry.
                while events:
                    await self.context.invoke(events[0])
                    events.pop(0)
                return None
            except EmberError as err:  # context.invoke recorded it
                error: BaseException = err
            except Exception as exc:  # a fault around the invocation: the same to the shard
                self.context.failed(exc)
                error = exc
            if isinstance(error, _TARGET_ERRORS):
                return error
            if isinstance(error, _WAIT_ERRORS):
                state = "waiting"
            else:
                failures += 1
                if failures > self.source.max_retries:
                    return error
                state = "retrying"
            shard.detail.update(state=state, at=first, error=str(error))
            await self.context.clock.sleep(delay)
            delay = min(delay * 2, _RETRY_MAX_S)
            await self._unpaused(shard)

    async def _dead_letter(self, shard: _Shard, records: list[tuple[str, dict[bytes, bytes]]],
                           ids: list[bytes], error: BaseException) -> None:
        """Move the batch to ``{stream}:dead`` and acknowledge it, all or nothing."""
        dead = f"{shard.stream}:dead"
        code = error.code if isinstance(error, EmberError) else type(error).__name__
        async with self._client.pipeline(transaction=True) as pipe:
            for record_id, raw in records:
                pipe.xadd(dead, {
                    "stream": shard.stream, "id": record_id, "fields": orjson.dumps(_fields(raw)),
                    "error": str(error), "code": code, "trigger": self.context.trigger.name,
                })
            pipe.xack(shard.stream, self._group, *ids)
            await _redis(pipe.execute())
        log.warning("trigger %s: %d records of stream %s dead-lettered to %s: %s",
                    self.context.trigger.name, len(records), shard.stream, dead, error)

    # Redis -------------------------------------------------------------------------------

    async def _ensure_group(self, stream: str) -> None:
        try:
            await _redis(
                self._client.xgroup_create(stream, self._group, id="0", mkstream=True))
        except ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise

    async def _read(self, stream: str, after: str, count: int,
                    block_ms: int | None) -> list[Entry]:
        reply: Any = await _redis(self._client.xreadgroup(
            self.source.group, self.consumer, {stream: after}, count=count, block=block_ms))
        if not reply:
            return []
        # RESP2: [[stream, entries]]; RESP3 (protocol=3 in the URL): {stream: [entries]}.
        listed = next(iter(reply.values()))[0] if isinstance(reply, dict) else reply[0][1]
        return [(entry_id, fields or {}) for entry_id, fields in listed]

    async def _read_batch(self, stream: str) -> list[Entry]:
        """Wait for a new record, then collect more for up to the batch window."""
        size = self.source.batch_size
        entries = await self._read(stream, ">", size, _BLOCK_MS)
        if not entries:
            return entries
        clock = self.context.clock
        deadline = clock.monotonic() + self.source.batch_window_ms / 1000
        while len(entries) < size:
            left_ms = int((deadline - clock.monotonic()) * 1000)
            if left_ms <= 0:
                break
            entries += await self._read(stream, ">", size - len(entries), min(left_ms, _BLOCK_MS))
        return entries

    async def _figures(self, shard: _Shard, *, force: bool = False) -> None:
        """Refresh the shard's pending and lag counts, at most once a second unless forced."""
        now = self.context.clock.monotonic()
        if not force and now - shard.figures_at < _FIGURES_EVERY_S:
            return
        shard.figures_at = now
        for group in await _redis(self._client.xinfo_groups(shard.stream)):
            if group.get("name") == self._group:
                shard.detail.update(pending=group.get("pending"), lag=group.get("lag"))

    async def _unpaused(self, shard: _Shard) -> None:
        if not self.paused.is_set():
            return
        state, shard.detail["state"] = shard.detail["state"], "paused"
        await self.running.wait()
        shard.detail["state"] = state


async def _redis(command: Awaitable[T]) -> T:
    """Await a Redis command, then honour a cancel it may have swallowed."""
    try:
        return await command
    finally:
        _honour_cancel()


def _honour_cancel() -> None:
    """Raise CancelledError when this task was asked to stop. On Python 3.11,
    ``asyncio.wait_for`` (which redis-py awaits around each write) returns normally when a
    cancel lands as its inner future completes, and the cancel is lost: a shard that missed
    it would run on and keep ``stop()`` waiting forever."""
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError


def _text(raw: bytes) -> str | None:
    try:
        return raw.decode()
    except UnicodeDecodeError:
        return None


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode()


def _fields(raw: dict[bytes, bytes]) -> dict[str, Any]:
    """A record's fields for JSON: UTF-8 values as text, others as ``{"base64": …}``; a
    name that is not UTF-8 becomes ``base64:`` and its base64."""
    fields: dict[str, Any] = {}
    for name, value in raw.items():
        key = _text(name)
        text = _text(value)
        fields[f"base64:{_b64(name)}" if key is None else key] = (
            {"base64": _b64(value)} if text is None else text
        )
    return fields
