"""The Queue on Redis: one stream per function read through a consumer group, tasks and
dead letters as hashes, every change one Lua script (``_redis_scripts.py``).

Keys, all under ``prefix`` (``{prefix}:…``; function names cannot contain ``:``):

    functions               set      functions that have queue state
    seq                     counter  stream entry ids, lease tokens, listing tie-breaks
    stream:{fn}             stream   events ready to run (fields ``id``, ``event``: msgpack),
                                     one consumer group ``ember``
    entry:{fn}              hash     task id → entry id, for events in the stream
    lease:{fn}              zset     entry id → lease_until (the caller's clock)
    token:{fn}              hash     entry id → token of the claim holding it
    delayed:{fn}            zset     task id → due time; dbody:{fn} hash task id → event
    events:{fn}             zset     task id → enqueued_at, every event queued, leased or
                                     delayed (depth and oldest age)
    task:{id}               hash     function, status, order, rev, data (msgpack Task)
    tasks:{fn}              zset     "<created_at>|<seq>|<id>" members sorted by bytes
    status:{fn}:{status}    zset     the same members, one set per status (statuses:{fn})
    idem:{fn}, idem-until:{fn}       idempotency key → task id, and → end of its window
    dl:{id}                 hash     function, order, data (msgpack DeadLetter)
    dls, dls:{fn}           zset     "<dead_at>|<seq>|<id>", all and per function
    finished                zset     task id → updated_at of every task in a final
                                     status, for purges

Time: every deadline (lease, retry delay, dedup window) is kept in the caller's ``now``
and compared inside the scripts, never against the server's clock, so the queue behaves
the same under a manual clock. Redis's own pending-entries list still shows which node
holds which entry (the consumer is the host name), but a lease runs out by ``lease:{fn}``.
Its delivery count tells how often an entry was claimed again after its lease ran out:
each such claim is a new attempt, added to the ``attempt`` of the event's body.

Entry ids come from one counter (``N-0``), so a claim can serve, in each round-robin round
over the functions, the function whose next event is oldest first.

Durability is Redis's: with AOF (``appendfsync everysec`` or ``always``) an accepted event
survives a Redis restart; with RDB snapshots or none, recent events can be lost. That is the
operator's choice. Connection failures raise ``ServiceUnavailable`` naming the server.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import dataclasses
import socket
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import msgpack  # type: ignore[import-untyped, unused-ignore]
import redis.asyncio as aioredis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoScriptError, RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError

from ember.errors import (
    DeadLetterNotFound,
    EmberError,
    InvalidRequest,
    ServiceUnavailable,
    TaskNotFound,
)
from ember.model.invocation import Attempt, DeadLetter, Event, Task
from ember.queue._redis_scripts import SCRIPTS
from ember.queue.base import Delivery, QueueFigures
from ember.store.base import Page

# The compare-and-set scripts (stop, redrive) start over when the task changed under them.
_CAS_TRIES = 20
# Tasks and dead letters a purge deletes per script.
_PURGE_BATCH = 500


def _pack(value: dict[str, Any]) -> bytes:
    return msgpack.packb(value, use_bin_type=True)  # type: ignore[no-any-return]


def _unpack(blob: bytes) -> dict[str, Any]:
    value: dict[str, Any] = msgpack.unpackb(blob, raw=False)
    return value


def _bytes(value: bytes | str | None) -> bytes:
    """A bulk reply (the client runs without decode_responses: payloads are binary)."""
    if not isinstance(value, bytes):
        raise EmberError(f"unexpected reply from Redis: {value!r}")
    return value


# Field names, so that packing a record builds its dict directly: dataclasses.asdict
# deep-copies every value, which cost more than the rest of a queue call.
_TASK_FIELDS = tuple(f.name for f in dataclasses.fields(Task))
_ATTEMPT_FIELDS = tuple(f.name for f in dataclasses.fields(Attempt))
_EVENT_FIELDS = tuple(f.name for f in dataclasses.fields(Event))


def _pack_task(task: Task) -> bytes:
    fields = {name: getattr(task, name) for name in _TASK_FIELDS}
    fields["history"] = [{name: getattr(a, name) for name in _ATTEMPT_FIELDS}
                         for a in task.history]
    return _pack(fields)


def _pack_event(event: Event) -> bytes:
    return _pack({name: getattr(event, name) for name in _EVENT_FIELDS})


def _unpack_task(blob: bytes) -> Task:
    fields = _unpack(blob)
    fields["history"] = [Attempt(**a) for a in fields.get("history", [])]
    return Task(**fields)


def _unpack_event(blob: bytes) -> Event:
    return Event(**_unpack(blob))


def _encode_cursor(member: bytes) -> str:
    return base64.urlsafe_b64encode(member).decode().rstrip("=")


def _decode_cursor(cursor: str) -> bytes:
    try:
        return base64.b64decode(cursor + "=" * (-len(cursor) % 4), altchars=b"-_", validate=True)
    except (ValueError, binascii.Error) as exc:
        raise InvalidRequest(
            "cursor is not valid: pass the next_cursor of a previous page", {"field": "cursor"}
        ) from exc


def _redact(url: str) -> str:
    """The URL without its password, fit for messages and logs."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    user = f"{parts.username}:***@" if parts.username else ":***@"
    host = parts.hostname or ""
    netloc = f"{user}{host}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))


class RedisQueue:
    """The Queue on a Redis server (6.2 or newer) at ``url``.

    Every key starts with ``prefix``, so several installations (or tests) can share one
    server. ``consumer`` names this node in the streams' pending-entries lists (default: the
    host name). At most ``max_connections`` commands are in flight; more wait for one.
    """

    def __init__(self, url: str, *, prefix: str = "ember", consumer: str | None = None,
                 max_connections: int = 50) -> None:
        self._url = _redact(url)
        self._prefix = prefix
        self._consumer = consumer or socket.gethostname()
        # A bounded pool that makes callers wait for a free connection: a burst of submits
        # queues up here instead of failing with "Too many connections".
        pool = aioredis.BlockingConnectionPool.from_url(
            url, max_connections=max_connections, timeout=20, socket_connect_timeout=5)
        self._client: aioredis.Redis = aioredis.Redis.from_pool(pool)
        self._scripts = {name: self._client.register_script(src) for name, src in SCRIPTS.items()}
        # Script calls made in one turn of the event loop (the acks of attempts that ended
        # together, the submits of concurrent requests) go to Redis as one pipeline: one
        # connection, one write and one read for all of them instead of one each. Each
        # script is still applied atomically, in the order the calls were made.
        self._pending: list[tuple[str, tuple[Any, ...], asyncio.Future[Any]]] = []
        self._sending: set[asyncio.Task[None]] = set()

    def _error(self, exc: RedisError) -> EmberError:
        """Redis failures converted once, here, into Ember's errors."""
        if isinstance(exc, (RedisConnectionError, RedisTimeoutError)):
            error: EmberError = ServiceUnavailable(
                f"the queue's Redis server at {self._url} cannot be reached ({exc}): start it, "
                "or point the queue at a running server",
                {"url": self._url},
            )
        else:
            error = EmberError(f"the queue's Redis server at {self._url} failed: {exc}",
                               {"url": self._url})
        error.__cause__ = exc
        return error

    @contextmanager
    def _guard(self) -> Iterator[None]:
        try:
            yield
        except RedisError as exc:
            raise self._error(exc) from exc

    async def _run(self, script: str, *args: Any) -> Any:
        """Run ``script`` with ``args``, in the pipeline of this turn of the event loop."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        if not self._pending:
            loop.call_soon(self._send)
        self._pending.append((script, args, future))
        return await future

    def _send(self) -> None:
        calls, self._pending = self._pending, []
        if not calls:
            return  # close sent them
        task = asyncio.get_running_loop().create_task(self._pipeline(calls))
        self._sending.add(task)
        task.add_done_callback(self._sending.discard)

    async def _pipeline(self, calls: list[tuple[str, tuple[Any, ...], asyncio.Future[Any]]]
                        ) -> None:
        outcomes: list[Any]
        try:
            if len(calls) == 1:
                script, args, _ = calls[0]
                try:
                    outcomes = [await self._scripts[script](args=[self._prefix, *args])]
                except RedisError as exc:
                    outcomes = [exc]
            else:
                async with self._client.pipeline(transaction=False) as pipe:
                    for script, args, _ in calls:
                        pipe.execute_command("EVALSHA", self._scripts[script].sha, 0,
                                             self._prefix, *args)
                    outcomes = await pipe.execute(raise_on_error=False)
                for i, (script, args, _) in enumerate(calls):
                    if isinstance(outcomes[i], NoScriptError):
                        # The server lost its scripts (a restart, SCRIPT FLUSH): this call
                        # ran nothing; the script's own call loads it and runs it.
                        try:
                            outcomes[i] = await self._scripts[script](
                                args=[self._prefix, *args])
                        except RedisError as exc:
                            outcomes[i] = exc
        except RedisError as exc:  # the connection failed: no call is known to have run
            outcomes = [exc] * len(calls)
        except BaseException:  # cancelled: tell the callers
            for _, _, future in calls:
                if not future.done():
                    future.set_exception(ServiceUnavailable("the queue is closing"))
            raise
        for (_, _, future), outcome in zip(calls, outcomes, strict=True):
            if future.done():
                continue  # the caller was cancelled
            if isinstance(outcome, RedisError):
                future.set_exception(self._error(outcome))
            elif isinstance(outcome, Exception):
                future.set_exception(outcome)
            else:
                future.set_result(outcome)

    def _key(self, *parts: str) -> str:
        return ":".join((self._prefix, *parts))

    async def start(self) -> None:
        """Check that the server answers; streams and groups are created on first use."""
        with self._guard():
            await self._client.ping()

    async def close(self) -> None:
        """Let the script calls already sent end, then close every connection of the
        pool."""
        if self._pending:
            self._send()
        while self._sending:
            await asyncio.gather(*self._sending, return_exceptions=True)
        await self._client.aclose()

    async def submit(
        self, event: Event, *, idempotency_key: str | None, dedup_window_s: float, now: float
    ) -> tuple[Task, bool]:
        """Store the event and its queued task in one script; see ``Queue.submit``."""
        task = Task(id=event.id, function=event.function, qualifier=event.qualifier,
                    status="queued", created_at=now, updated_at=now,
                    idempotency_key=idempotency_key)
        found = await self._run(
            "submit", event.function, event.id, _pack_event(event),
            event.enqueued_at, idempotency_key or "", now, now + dedup_window_s,
            task.status, task.created_at, _pack_task(task), task.updated_at,
        )
        if found[0] == 1:
            return _unpack_task(found[1]), False
        return task, True

    async def claim(
        self, limit: int, lease_s: float, *, now: float, paused: frozenset[str] = frozenset(),
        limits: Mapping[str, int] | None = None,
    ) -> list[Delivery]:
        """Lease up to ``limit`` due events, round robin across functions, at most
        ``limits[f]`` of a function ``f`` leased at once; see ``Queue.claim``."""
        if limit <= 0:
            return []
        skipped = sorted(paused)
        caps = [x for function, cap in sorted((limits or {}).items()) for x in (function, cap)]
        flat = await self._run("claim", now, now + lease_s, limit, self._consumer,
                               len(skipped), *skipped, len(caps) // 2, *caps)
        deliveries = []
        for i in range(0, len(flat), 5):
            event, redeliveries = _unpack_event(flat[i + 2]), int(flat[i + 3])
            if redeliveries:  # leases that ran out: attempts that were cut short
                event = dataclasses.replace(event, attempt=event.attempt + redeliveries)
            task = _unpack_task(flat[i + 4]) if flat[i + 4] else None
            deliveries.append(Delivery(event, flat[i + 1].decode(), redeliveries > 0, task))
        return deliveries

    async def extend(self, delivery: Delivery, lease_s: float, *, now: float) -> None:
        """Move the lease's end to ``now + lease_s``; a stale token changes nothing."""
        await self._run("extend", delivery.event.function, delivery.token, now + lease_s)

    async def _settle(self, delivery: Delivery, task: Task | None, mode: str,
                      *extra: Any) -> None:
        event = delivery.event
        status, created, blob, updated = ("", 0, b"", 0) if task is None else (
            task.status, task.created_at, _pack_task(task), task.updated_at)
        await self._run("settle", event.function, event.id, delivery.token, mode,
                        status, created, blob, *extra, updated)

    async def ack(self, delivery: Delivery, task: Task) -> None:
        """Remove the event (unless the token is stale) and store ``task``."""
        await self._settle(delivery, task, "ack")

    async def retry(self, delivery: Delivery, task: Task, *, delay_s: float, now: float) -> None:
        """Store ``task`` and put the event back with ``attempt`` + 1, due at
        ``now + delay_s``."""
        event = dataclasses.replace(delivery.event, attempt=delivery.event.attempt + 1)
        await self._settle(delivery, task, "requeue", _pack_event(event),
                           event.enqueued_at, now + delay_s, now)

    async def postpone(self, delivery: Delivery, *, delay_s: float, now: float) -> None:
        """Put the event back as it was, due at ``now + delay_s``; the task is untouched."""
        event = delivery.event
        await self._settle(delivery, None, "requeue", _pack_event(event),
                           event.enqueued_at, now + delay_s, now)

    async def dead_letter(self, delivery: Delivery, task: Task, reason: dict[str, object],
                          *, now: float) -> None:
        """Remove the event, keep it as a dead letter with ``reason``, store ``task``
        (marked ``dead_lettered``)."""
        event = delivery.event
        task = dataclasses.replace(task, dead_lettered=True)
        dead = DeadLetter(id=event.id, function=event.function, qualifier=event.qualifier,
                          payload=event.payload, content_type=event.content_type,
                          enqueued_at=event.enqueued_at, dead_at=now, reason=dict(reason))
        await self._settle(delivery, task, "dead", now, _pack(dataclasses.asdict(dead)))

    async def _read_task(self, task_id: str) -> tuple[Task, str] | None:
        """The task and its revision, or None."""
        with self._guard():
            blob, rev = await self._client.hmget(self._key("task", task_id), ["data", "rev"])
        if blob is None:
            return None
        return _unpack_task(_bytes(blob)), _bytes(rev).decode()

    async def get_task(self, task_id: str) -> Task:
        """Raises TaskNotFound."""
        found = await self._read_task(task_id)
        if found is None:
            raise TaskNotFound(f"task {task_id!r} does not exist", {"task": task_id})
        return found[0]

    async def _list(self, index: list[str], record: str, limit: int,
                    cursor: str | None) -> tuple[list[bytes], str | None]:
        if limit < 1:
            raise InvalidRequest(f"limit must be at least 1, not {limit}", {"field": "limit"})
        after = _decode_cursor(cursor) if cursor else b""
        flat = await self._run("list", *index, after, limit + 1, record)
        members, blobs = flat[0::2], flat[1::2]
        if len(blobs) > limit:
            return blobs[:limit], _encode_cursor(members[limit - 1])
        return blobs, None

    async def list_tasks(
        self, function: str, *, status: str | None = None, limit: int = 100,
        cursor: str | None = None,
    ) -> Page[Task]:
        """Tasks of a function, newest first; ``cursor`` is a previous page's
        ``next_cursor`` (InvalidRequest when it is not one)."""
        index = ["status", function, status] if status else ["tasks", function]
        blobs, following = await self._list(index, "task", limit, cursor)
        return Page([_unpack_task(b) for b in blobs], following)

    async def save_task(self, task: Task) -> None:
        """Store the task's new state."""
        await self._run("save_task", task.function, task.id, task.status, task.created_at,
                        _pack_task(task), task.updated_at)

    async def stop_queued(self, task_id: str, *, now: float) -> Task | None:
        """Remove a waiting (or delayed, or abandoned) event and mark its task ``stopped``;
        None while a live lease holds it; a final task comes back unchanged. Raises
        TaskNotFound."""
        for _ in range(_CAS_TRIES):
            found = await self._read_task(task_id)
            if found is None:
                raise TaskNotFound(f"task {task_id!r} does not exist", {"task": task_id})
            task, rev = found
            if task.final:
                return task
            stopped = dataclasses.replace(task, status="stopped", updated_at=now,
                                          finished_at=now)
            outcome = await self._run("stop", task.function, task_id, rev, now,
                                      stopped.status, stopped.created_at, _pack_task(stopped),
                                      stopped.updated_at)
            if outcome == b"stopped":
                return stopped
            if outcome == b"leased":
                return None
        raise ServiceUnavailable(f"task {task_id!r} kept changing while being stopped; "
                                 "try again", {"task": task_id})

    async def list_dead_letters(
        self, function: str | None = None, *, limit: int = 100, cursor: str | None = None
    ) -> Page[DeadLetter]:
        """Dead letters, newest first, of one function or of all."""
        index = ["dls", function] if function else ["dls"]
        blobs, following = await self._list(index, "dl", limit, cursor)
        return Page([DeadLetter(**_unpack(b)) for b in blobs], following)

    async def get_dead_letter(self, task_id: str) -> DeadLetter:
        """Raises NotFound."""
        with self._guard():
            blob = await self._client.hget(self._key("dl", task_id), "data")
        if blob is None:
            raise DeadLetterNotFound(f"no dead letter for task {task_id!r}", {"task": task_id})
        return DeadLetter(**_unpack(_bytes(blob)))

    async def redrive(self, task_id: str, *, now: float) -> Task:
        """Queue a dead letter again as a fresh event (attempt 0, enqueued now) and set its
        task ``queued``. Raises NotFound."""
        for _ in range(_CAS_TRIES):
            dead = await self.get_dead_letter(task_id)
            found = await self._read_task(task_id)
            if found is None:  # the task was lost: rebuild it from the dead letter
                task = Task(id=dead.id, function=dead.function, qualifier=dead.qualifier,
                            status="queued", created_at=dead.enqueued_at, updated_at=now)
                rev = ""
            else:
                task = dataclasses.replace(found[0], status="queued", updated_at=now,
                                           finished_at=None, error=None, dead_lettered=False)
                rev = found[1]
            event = Event(id=dead.id, function=dead.function, qualifier=dead.qualifier,
                          payload=dead.payload, content_type=dead.content_type,
                          enqueued_at=now, attempt=0)
            outcome = await self._run("redrive", dead.function, task_id, rev, now,
                                      _pack_event(event), task.status,
                                      task.created_at, _pack_task(task), task.updated_at)
            if outcome == b"queued":
                return task
            if outcome == b"missing":
                break
        raise DeadLetterNotFound(f"no dead letter for task {task_id!r}", {"task": task_id})

    async def figures(self, function: str | None = None, *, now: float) -> QueueFigures:
        """Depth counts every event queued, leased or delayed; ``leased`` only live leases;
        ``delayed`` only events whose retry is not yet due."""
        depth, leased, delayed, oldest, dead = await self._run("figures", now, function or "")
        return QueueFigures(
            depth=depth, leased=leased, delayed=delayed,
            oldest_age_s=None if oldest is None else max(0.0, now - float(oldest)),
            dead_letters=dead,
        )

    async def delete_function(self, function: str) -> None:
        """Drop every event, task, dead letter and idempotency key of ``function``."""
        await self._run("delete_function", function)

    async def purge(self, before: float) -> int:
        """Delete tasks final since before ``before`` and dead letters older than it, a
        batch per script so that Redis serves other commands in between; return how many."""
        removed = 0
        while True:
            tasks, seen, dead = (int(n) for n in await self._run("purge", before, _PURGE_BATCH))
            removed += tasks + dead
            if seen < _PURGE_BATCH and dead < _PURGE_BATCH:
                return removed
