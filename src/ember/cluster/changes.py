"""One view: a control-plane change made through one node reaches every node's caches.

Every service that keeps control-plane state in memory (the router's routes and pools, the
supervisor's trigger sources, the worker's paused functions, the key cache, workflow
schedules, provisioned policies) announces each change it commits with
``publish(kind, name)``, and registers receivers for its kinds with :meth:`ChangeBus.follow`.
A node receiving another node's change calls the receiver, which tells that node's local
listeners what a local change would tell them — without announcing it again.

On SQLite (one node) :class:`ChangeBus` itself is the bus: it publishes nothing, so
receivers are never called. On PostgreSQL, :class:`PostgresChangeBus` uses LISTEN/NOTIFY
on one channel (``ember_changes``), payload JSON ``{"node", "kind", "name"}``:

- NOTIFY is sent through the metadata engine right **after** the change's transaction has
  committed (the stores own their transactions, so it is not sent inside them): a reader
  woken by it finds the change, but a node that dies between the commit and the NOTIFY
  leaves the others' caches stale until their next resync.
- Each node LISTENs on a dedicated connection of its own (autocommit, application_name
  ``ember-changes-<node>``), ignores its own messages, and runs receivers one at a time, in
  arrival order: a blocking receiver in a worker thread (it may read the store), an
  ``async`` one on the event loop. A silent connection is pinged every ``ping_s``.
- A notification sent while a node's connection is down is lost to it, so once it is
  connected again every ``on_resync`` callback runs: each service treats everything as
  changed (drops its caches, the supervisor reloads every trigger). The connection is
  retried with backoff (0.1 s doubling to 5 s) until it is back.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import sqlalchemy as sa

from ember.clock import Clock

log = logging.getLogger(__name__)

CHANNEL = "ember_changes"
CLOSE_TIMEOUT_S = 5.0  # a listening connection that will not close is left to the server
# Kinds, each announced by one service.
FUNCTION = "function"  # a function, its versions or aliases changed (or it was created)
FUNCTION_DELETED = "function.deleted"
TRIGGER = "trigger"
KEY = "key"  # the name is the key's id, which the key cache is keyed by
WORKFLOW = "workflow"
PROVISIONED = "provisioned"  # the name is "function/qualifier"

Receiver = Callable[[str], None] | Callable[[str], Awaitable[None]]
Resync = Callable[[], None] | Callable[[], Awaitable[None]]


class ChangeBus:
    """Where services announce changes and follow other nodes' changes. This base class
    serves one node alone (SQLite): nothing is published, nothing is received."""

    def __init__(self, node: str) -> None:
        self.node = node
        self._receivers: dict[str, list[Receiver]] = {}
        self._resyncs: list[Resync] = []

    def publish(self, kind: str, name: str) -> None:
        """Tell the other nodes that ``name`` of ``kind`` changed; called after the change
        is committed, from any thread (it may block briefly). Never raises: a change that
        could not be announced is logged (the other nodes see it at their next resync)."""

    def follow(self, kind: str, receive: Receiver) -> None:
        """Call ``receive(name)`` for each change of ``kind`` another node announces."""
        self._receivers.setdefault(kind, []).append(receive)

    def on_resync(self, resync: Resync) -> None:
        """Call ``resync()`` when changes may have been missed: treat everything as
        changed."""
        self._resyncs.append(resync)

    async def start(self) -> None:
        """Start following other nodes' changes (before the services load their state, so
        that no change falls between their loading and the first one received)."""

    async def close(self) -> None:
        """Stop following changes."""

    async def deliver(self, kind: str, name: str) -> None:
        """Run the receivers of a change made on another node, one after the other."""
        for receive in self._receivers.get(kind, []):
            try:
                await _call(receive, name)
            except Exception:
                log.exception("following a change of %s %r made on another node", kind, name)

    async def resync(self) -> None:
        """Run every resync callback: everything may have changed."""
        for resync in self._resyncs:
            try:
                await _call(resync)
            except Exception:
                log.exception("resyncing after missed changes")


async def _call(function: Callable[..., Any], *args: Any) -> None:
    if inspect.iscoroutinefunction(function):
        await function(*args)
    else:
        await asyncio.to_thread(function, *args)


class PostgresChangeBus(ChangeBus):
    """LISTEN/NOTIFY on the metadata store's PostgreSQL (see the module's docstring).

    Args:
        engine: the metadata store's engine; NOTIFY goes through its pool, and the
            listening connection is made to its database.
        node: this node's id (``NodeRegistry.id``), sent with each change and used to
            ignore this node's own ones.
        clock: for the reconnection backoff (the ping's deadline is real time).
        ping_s: how long the listening connection may stay silent before it is checked.
    """

    def __init__(self, engine: sa.Engine, node: str, clock: Clock, *,
                 ping_s: float = 5.0) -> None:
        super().__init__(node)
        self._engine = engine
        self._clock = clock
        self._ping_s = ping_s
        self._url = engine.url.set(drivername="postgresql").render_as_string(
            hide_password=False)
        # (kind, name) of each change received; None: everything may have changed.
        self._inbox: asyncio.Queue[tuple[str, str] | None] = asyncio.Queue()
        self._tasks: list[asyncio.Task[None]] = []
        self._connection: Any = None  # psycopg.AsyncConnection while listening
        self.connects = 0  # connections made (a reconnect counts too)

    @property
    def application_name(self) -> str:
        """What the listening connection shows as in ``pg_stat_activity``."""
        return f"ember-changes-{self.node}"[:63]

    def publish(self, kind: str, name: str) -> None:
        payload = json.dumps({"node": self.node, "kind": kind, "name": name})
        try:
            with self._engine.begin() as conn:
                conn.execute(sa.text("SELECT pg_notify(:channel, :payload)"),
                             {"channel": CHANNEL, "payload": payload})
        except sa.exc.SQLAlchemyError as exc:
            log.warning("could not tell the other nodes that %s %r changed (%s): they keep "
                        "what they cached of it until they resync", kind, name, exc)

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            connection = await self._connect()
        except Exception as exc:
            log.warning("cannot listen for other nodes' changes yet (%s): retrying", exc)
            connection = None
        self._tasks = [loop.create_task(self._listen(connection)),
                       loop.create_task(self._dispatch())]

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []
        await self._drop()

    async def _connect(self) -> Any:
        import psycopg

        connection = await psycopg.AsyncConnection.connect(
            self._url, autocommit=True, application_name=self.application_name,
            connect_timeout=10)
        try:
            await connection.execute(f"LISTEN {CHANNEL}")
        except BaseException:
            await connection.close()
            raise
        self._connection = connection
        self.connects += 1
        return connection

    async def _drop(self) -> None:
        connection, self._connection = self._connection, None
        if connection is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(connection.close(), CLOSE_TIMEOUT_S)

    async def _listen(self, connection: Any) -> None:
        """Receive until the connection fails, then connect again (with backoff) and
        resync; forever, until closed."""
        delay = 0.1
        while True:
            if connection is None:
                try:
                    connection = await self._connect()
                except Exception as exc:
                    log.debug("listening for changes: cannot connect: %s", exc)
                    await self._clock.sleep(delay)
                    delay = min(delay * 2, 5.0)
                    continue
                log.info("listening for other nodes' changes again: everything they "
                         "changed meanwhile is treated as changed")
                self._inbox.put_nowait(None)
            delay = 0.1
            try:
                await self._receive(connection)
            except Exception as exc:
                log.warning("lost the connection that hears other nodes' changes (%s): "
                            "reconnecting", exc)
            await self._drop()
            connection = None

    async def _receive(self, connection: Any) -> None:
        while True:
            async for notify in connection.notifies(timeout=self._ping_s):
                self._take(notify.payload)
            # The network keeps real time, whatever clock the server runs on: a ping that
            # does not come back fails the connection even when that clock stands still.
            await asyncio.wait_for(connection.execute("SELECT 1"), self._ping_s)

    def _take(self, payload: str) -> None:
        try:
            message = json.loads(payload)
            node, kind, name = message["node"], message["kind"], message["name"]
        except (ValueError, KeyError, TypeError):
            log.warning("ignored a change message that is not Ember's: %.200s", payload)
            return
        if node != self.node:
            self._inbox.put_nowait((kind, name))

    async def _dispatch(self) -> None:
        while True:
            item = await self._inbox.get()
            if item is None:
                await self.resync()
            else:
                await self.deliver(*item)


def change_bus(engine: sa.Engine, node: str, clock: Clock) -> ChangeBus:
    """The bus for the metadata store behind ``engine``: LISTEN/NOTIFY on PostgreSQL,
    nothing on SQLite (one node)."""
    if engine.dialect.name == "postgresql":
        return PostgresChangeBus(engine, node, clock)
    return ChangeBus(node)
