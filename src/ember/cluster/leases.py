"""Trigger ownership: each trigger source that pulls its events runs on one live node, the
one holding the trigger's lease.

An HTTP trigger takes the requests that reach whichever node a client calls: it runs on
every node, without a lease. Every other source (timer, mqtt, amqp, nats, redis_stream,
storage) pulls from somewhere, and two nodes pulling the same subscription, queue, stream or
schedule would deliver its events twice: the supervisor runs it only while this node holds
its lease (``acquire``), and stops it when the lease goes (``Owner.lease_lost``).

**One node** (``LocalLeases``, SQLite): there is nobody to compete with; every lease asked
for is granted.

**PostgreSQL** (``PostgresLeases``): a lease is a session advisory lock
(``pg_try_advisory_lock``) on a connection the lease manager keeps for itself, keyed by a
64-bit hash of ``ember.trigger`` and the trigger's name (``lease_key``). It lasts as long as
that connection: a node that stops, crashes or is killed (``kill -9`` included) closes it,
and PostgreSQL frees its locks at once. A machine that vanishes without closing it is found
out by the server's TCP keepalives, which the connection sets (``-c tcp_keepalives_*``):
its locks are freed ``lease_beat_s + 11`` s after it went silent at the latest.

Every ``lease_beat_s`` (``EMBER_LEASE_BEAT_S``, 1 s by default) each node **beats**:

1. It checks its connection, with one query that also lists every advisory lock of the
   database and the session holding it. A connection that fails, or does not answer within
   ``OP_TIMEOUT_S``, or a lease missing from the list, means leases lost: the node stops
   those sources at once (before the server frees the locks of a silent peer), then
   connects again and competes again.
2. It hands over the leases another node claims (below), and every lease while draining:
   it stops the source first, then unlocks.
3. It takes the free leases of the triggers it wants (enabled or paused, known to it): at
   once those it is **preferred** for, the others once they stayed free for a whole beat —
   a dead node's triggers are taken over by their preferred live node first, by any other
   one beat later. The node preferred for a trigger is the winner of rendezvous hashing of
   the trigger's name over the alive nodes (``NodeRegistry``; this one always counts).
4. It **claims** the triggers it is preferred for that another node holds, by holding a
   second advisory lock (key from ``ember.trigger.claim``); the holder gives the lease up at
   its next beat and nobody else takes it while it is claimed, so the claimant gets it at
   its own next beat and drops the claim. A lease is given up only when claimed, so it is
   never left free for a node that does not want it (one that has not learnt of the
   trigger yet).

When the supervisor learns of a trigger (at start, on a change) it tries the lease at once,
preferred or not: a trigger runs as soon as one node knows it, and moves to its preferred
node by the claims. Leases spread across the alive nodes as rendezvous hashing spreads
names: evenly in expectation, not exactly. A node joining takes over its share within about
three beats; a node killed has its triggers running elsewhere within about two beats.

**Who holds a lease** is seen from every node without a table of its own: the lease
connection's ``application_name`` is ``ember-lease:{node id}`` (``ember-lease#`` and a
digest of the id when that is longer than PostgreSQL keeps), so ``pg_locks`` joined with
``pg_stat_activity`` names the node behind each advisory lock. Each beat reads it;
``holder()`` answers from the last beat, and exactly for this node's own leases.

**Draining** (``drain(True)``) hands every lease over at the next beat and takes none until
``drain(False)``; the other nodes, which count only alive nodes as preferred, take them.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

import sqlalchemy as sa

from ember.aio import cancel_and_wait
from ember.clock import Clock
from ember.cluster.nodes import preferred

log = logging.getLogger(__name__)

T = TypeVar("T")

NAMESPACE = "ember.trigger"
CLAIM_NAMESPACE = "ember.trigger.claim"
APPLICATION = "ember-lease:"
_HASHED_APPLICATION = "ember-lease#"
_MAX_APPLICATION = 63  # PostgreSQL keeps NAMEDATALEN - 1 bytes of an application_name
OP_TIMEOUT_S = 5.0
"""The longest a lease query may take before the connection counts as lost."""
_KEEPALIVE_INTERVAL_S = 2
_KEEPALIVE_COUNT = 3
_ALIVE = "alive"

_LOCKS = """
SELECT l.classid::bigint, l.objid::bigint, l.pid, a.application_name
FROM pg_locks l LEFT JOIN pg_stat_activity a ON a.pid = l.pid
WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 1
  AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
"""


def lease_key(namespace: str, name: str) -> int:
    """The advisory lock key (a signed 64-bit integer) of ``name`` in ``namespace``: the
    same on every node and every release."""
    digest = hashlib.sha256(f"{namespace}\0{name}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


def _key_of(classid: int, objid: int) -> int:
    """The key of an advisory lock as ``pg_locks`` shows a bigint one: its high and low
    halves as ``classid`` and ``objid``."""
    unsigned = (classid << 32) | objid
    return unsigned - (1 << 64) if unsigned >= 1 << 63 else unsigned


def application_name(node: str) -> str:
    """The ``application_name`` of node ``node``'s lease connection."""
    plain = APPLICATION + node
    if len(plain.encode()) <= _MAX_APPLICATION:
        return plain
    return _HASHED_APPLICATION + hashlib.sha256(node.encode()).hexdigest()[:16]


class Owner(Protocol):
    """What runs the leased sources (the trigger supervisor). Its callbacks may call
    ``acquire`` and ``release``."""

    async def lease_gained(self, name: str) -> None:
        """This node now holds ``name``'s lease: start its source (or ``release`` it)."""
        ...

    async def lease_lost(self, name: str) -> None:
        """Stop ``name``'s source now: its lease is lost, or is unlocked once this
        returns."""
        ...


class Members(Protocol):
    """The nodes sharing the store (``NodeRegistry``)."""

    @property
    def id(self) -> str: ...

    def nodes(self) -> list[Any]:
        """Every known node; each has ``id`` and ``state``."""
        ...


class Leases(Protocol):
    """A node's leases. ``acquire`` and ``release`` are called by the owner only, one at a
    time per name."""

    node: str

    async def start(self, owner: Owner) -> None: ...

    async def acquire(self, name: str) -> bool:
        """Compete for ``name``'s lease from now on; whether this node holds it now."""
        ...

    async def release(self, name: str) -> None:
        """Stop competing for ``name``; unlock it if held (its source is stopped)."""
        ...

    def holder(self, name: str) -> str | None:
        """The node holding ``name``'s lease, None when no node does."""
        ...

    def count(self) -> int:
        """How many leases this node holds."""
        ...

    async def drain(self, draining: bool) -> None:
        """Hand every lease over and take none (True), or compete again (False)."""
        ...

    async def close(self) -> None:
        """Stop competing and free every lease (the owner stopped its sources)."""
        ...


class LocalLeases:
    """The leases of a server alone on its store: each one asked for is granted, unless the
    server is draining."""

    def __init__(self, node: str) -> None:
        self.node = node
        self._owner: Owner | None = None
        self._wanted: set[str] = set()
        self._held: set[str] = set()
        self._draining = False

    async def start(self, owner: Owner) -> None:
        self._owner = owner

    async def acquire(self, name: str) -> bool:
        self._wanted.add(name)
        if not self._draining:
            self._held.add(name)
        return name in self._held

    async def release(self, name: str) -> None:
        self._wanted.discard(name)
        self._held.discard(name)

    def holder(self, name: str) -> str | None:
        return self.node if name in self._held else None

    def count(self) -> int:
        return len(self._held)

    async def drain(self, draining: bool) -> None:
        self._draining = draining
        owner = self._owner
        if owner is None:
            return
        if draining:
            for name in sorted(self._held):
                await owner.lease_lost(name)
                self._held.discard(name)
        else:
            for name in sorted(self._wanted - self._held):
                self._held.add(name)
                await owner.lease_gained(name)

    async def close(self) -> None:
        self._held.clear()
        self._wanted.clear()


@dataclass
class _Snapshot:
    """The advisory locks of the database at one beat: key → pid, pid → application."""

    locks: dict[int, int]
    applications: dict[int, str]


class PostgresLeases:
    """Leases as PostgreSQL session advisory locks; see the module docstring.

    ``beat()`` runs one round (the loop started by ``start`` calls it every ``beat_s`` on
    ``clock``); tests call it directly."""

    def __init__(self, database_url: str, members: Members, clock: Clock, *,
                 beat_s: float) -> None:
        self.node = members.id
        self.beat_s = beat_s
        self._url = database_url
        self._members = members
        self._clock = clock
        self._owner: Owner | None = None
        self._conn: Any = None  # psycopg.Connection, autocommit
        self._pid: int | None = None
        self._broken = False  # a query failed outside a beat: the next beat drops it
        self._stuck: asyncio.Future[Any] | None = None  # a query that timed out
        self._lock = asyncio.Lock()  # one query at a time on the connection
        self._wanted: set[str] = set()
        self._held: set[str] = set()
        self._claims: set[str] = set()
        self._yielding: set[str] = set()  # stopping, unlocked once stopped
        self._free_before: set[str] = set()  # wanted, seen free at the last beat
        self._snapshot = _Snapshot({}, {})
        self._alive: list[str] = [self.node]
        self._known: dict[str, str] = {}  # hashed application name → node id
        self._draining = False
        self._failing = False  # the connection cannot be opened (logged once)
        self._task: asyncio.Task[None] | None = None
        self._background: set[asyncio.Task[None]] = set()

    # the owner's calls -------------------------------------------------------------------

    async def start(self, owner: Owner) -> None:
        """Connect and read who holds what, then beat every ``beat_s``. A database that
        does not answer now is tried again at each beat."""
        self._owner = owner
        await self._read_members()
        async with self._lock:
            await self._check()
        self._task = asyncio.get_running_loop().create_task(self._beat_forever())

    async def acquire(self, name: str) -> bool:
        async with self._lock:
            self._wanted.add(name)
            if name in self._held:
                return True
            if (self._draining or name in self._yielding or self._conn is None
                    or self._broken or self._claimed_by_other(name)):
                return False
            return await self._try_lock(name)

    async def release(self, name: str) -> None:
        async with self._lock:
            self._wanted.discard(name)
            self._free_before.discard(name)
            await self._unlock_claim(name)
            await self._unlock(name)

    def holder(self, name: str) -> str | None:
        if name in self._held:
            return self.node
        pid = self._snapshot.locks.get(lease_key(NAMESPACE, name))
        return None if pid is None else self._node_of(pid)

    def count(self) -> int:
        return len(self._held)

    async def drain(self, draining: bool) -> None:
        self._draining = draining
        if draining:
            await self._hand_over(set(self._held))

    async def close(self) -> None:
        # A beat's query may swallow the cancellation (``cancel_and_wait``): the loop would
        # then go back to sleep, and on a manual clock never wake.
        await cancel_and_wait(self._task)
        self._task = None
        async with self._lock:
            conn, self._conn = self._conn, None
            self._held.clear()
            self._claims.clear()
            self._wanted.clear()
        if conn is not None:
            self._discard(conn)  # closing the session frees every lock it holds
        if self._background:
            await asyncio.gather(*self._background, return_exceptions=True)

    # the beat ----------------------------------------------------------------------------

    async def _beat_forever(self) -> None:
        while True:
            await self._clock.sleep(self.beat_s)
            try:
                await self.beat()
            except Exception:  # the next beat tries again; sources were stopped if need be
                log.exception("node %s: lease beat failed", self.node)

    async def beat(self) -> None:
        """One round: check the connection (stopping the sources of leases lost), hand over
        claimed leases, take free ones, claim preferred ones."""
        await self._read_members()
        async with self._lock:
            lost = await self._check()
        await self._lose(lost)
        claimed = {name for name in self._held if self._claimed_by_other(name)}
        await self._hand_over(set(self._held) if self._draining else claimed)
        gained: list[str] = []
        async with self._lock:
            if self._conn is not None and not self._broken:
                gained = await self._compete()
        owner = self._owner
        for name in gained:
            if owner is not None:
                await owner.lease_gained(name)

    async def _check(self) -> set[str]:
        """Under the lock: make sure the connection works (connecting again if need be)
        and read the locks; the names of the leases lost (every one held, when the
        connection is), kept from ``acquire`` until their sources stopped (``_lose``)."""
        if self._conn is not None and not self._broken:
            try:
                await self._refresh()
            except Exception as exc:
                log.warning("node %s: the lease connection failed (%s): its %d leases are "
                            "lost", self.node, exc, len(self._held))
                self._broken = True
        if self._broken:
            lost = set(self._held)
            self._drop_connection()
        else:
            lost = {name for name in self._held
                    if self._snapshot.locks.get(lease_key(NAMESPACE, name)) != self._pid}
            if lost:
                log.warning("node %s: leases %s are no longer held", self.node, sorted(lost))
            self._held -= lost
        if self._conn is None:
            try:
                await self._refresh()
                self._failing = False
            except Exception as exc:
                if not self._failing:
                    log.warning("node %s: cannot open the lease connection (%s); trying "
                                "again at each beat", self.node, exc)
                self._failing = True
                self._drop_connection()
        self._yielding |= lost
        return lost

    async def _lose(self, names: set[str]) -> None:
        """Stop the sources of the leases lost; then they may be taken again."""
        try:
            for name in sorted(names):
                if self._owner is not None:
                    await self._owner.lease_lost(name)
        finally:
            self._yielding -= names

    async def _hand_over(self, names: set[str]) -> None:
        """Stop the sources of ``names``, then unlock their leases (unless released
        meanwhile)."""
        names -= self._yielding
        if not names:
            return
        self._yielding |= names
        try:
            for name in sorted(names):
                log.info("node %s hands trigger %s over", self.node, name)
                if self._owner is not None:
                    await self._owner.lease_lost(name)
                async with self._lock:
                    await self._unlock(name)
        finally:
            self._yielding -= names

    async def _compete(self) -> list[str]:
        """Under the lock: take the free leases due, claim the preferred ones held
        elsewhere, drop claims no longer needed; the names newly held."""
        gained: list[str] = []
        free_now: set[str] = set()
        for name in sorted(self._wanted - self._held - self._yielding):
            if self._draining:
                break
            mine = preferred(name, self._alive) == self.node
            if self._claimed_by_other(name):
                continue
            holder = self._snapshot.locks.get(lease_key(NAMESPACE, name))
            if holder is None:
                if (mine or name in self._free_before) and await self._try_lock(name):
                    gained.append(name)
                elif not mine:
                    free_now.add(name)
            elif mine and name not in self._claims:
                await self._claim(name)
        for name in sorted(self._claims):
            mine = preferred(name, self._alive) == self.node
            if name in self._held or name not in self._wanted or not mine or self._draining:
                await self._unlock_claim(name)
        self._free_before = free_now
        return gained

    async def _read_members(self) -> None:
        """The alive nodes, for preference (this one always counts), and the names of
        every known node's lease connection."""
        try:
            nodes = await asyncio.to_thread(self._members.nodes)
        except Exception as exc:
            log.warning("node %s: cannot list the nodes (%s); leases go by the last list",
                        self.node, exc)
            return
        alive = {node.id for node in nodes if node.state == _ALIVE}
        alive.add(self.node)
        self._alive = sorted(alive)
        self._known = {application_name(node.id): node.id for node in nodes}

    # PostgreSQL --------------------------------------------------------------------------

    def _claimed_by_other(self, name: str) -> bool:
        claimer = self._snapshot.locks.get(lease_key(CLAIM_NAMESPACE, name))
        return claimer is not None and claimer != self._pid

    def _node_of(self, pid: int) -> str | None:
        if pid == self._pid:
            return self.node
        application = self._snapshot.applications.get(pid) or ""
        if application.startswith(APPLICATION):
            return application[len(APPLICATION):]
        return self._known.get(application)

    async def _refresh(self) -> None:
        """Under the lock: connect if need be, and read every advisory lock."""
        if self._conn is None:
            self._conn = await self._query(self._connect)
            self._pid = int(self._conn.info.backend_pid)
            self._broken = False
            log.info("node %s: lease connection open (backend %s)", self.node, self._pid)
        rows = await self._query(lambda: self._conn.execute(_LOCKS).fetchall())
        locks: dict[int, int] = {}
        applications: dict[int, str] = {}
        for classid, objid, pid, application in rows:
            locks[_key_of(int(classid), int(objid))] = int(pid)
            applications[int(pid)] = application or ""
        self._snapshot = _Snapshot(locks, applications)

    def _connect(self) -> Any:
        import psycopg

        url = sa.make_url(self._url).set(drivername="postgresql")
        idle = math.ceil(self.beat_s + OP_TIMEOUT_S)
        # The server's keepalives free a vanished node's locks; ours end a query to a
        # vanished server (and tcp_user_timeout one whose packets go unanswered).
        options = (f"-c tcp_keepalives_idle={idle} "
                   f"-c tcp_keepalives_interval={_KEEPALIVE_INTERVAL_S} "
                   f"-c tcp_keepalives_count={_KEEPALIVE_COUNT}")
        return psycopg.connect(
            url.render_as_string(hide_password=False), autocommit=True,
            application_name=application_name(self.node), connect_timeout=int(OP_TIMEOUT_S),
            keepalives=1, keepalives_idle=idle, keepalives_interval=_KEEPALIVE_INTERVAL_S,
            keepalives_count=_KEEPALIVE_COUNT, tcp_user_timeout=int(OP_TIMEOUT_S * 1000),
            options=options,
        )

    async def _query(self, call: Callable[[], T]) -> T:
        """``call()`` in a thread, within OP_TIMEOUT_S (TimeoutError after: the connection
        is then left to that thread, and dropped)."""
        if self._stuck is not None and not self._stuck.done():
            raise TimeoutError("an earlier lease query has not returned")
        future = asyncio.ensure_future(asyncio.to_thread(call))
        try:
            return await asyncio.wait_for(asyncio.shield(future), OP_TIMEOUT_S)
        except TimeoutError:
            self._stuck = future
            raise

    async def _try_lock(self, name: str) -> bool:
        """Under the lock: take ``name``'s lease if free (not already held: a session's
        advisory locks stack)."""
        key = lease_key(NAMESPACE, name)
        try:
            got = bool(await self._query(
                lambda: self._conn.execute("SELECT pg_try_advisory_lock(%s)",
                                           (key,)).fetchone()[0]))
        except Exception as exc:
            log.warning("node %s: cannot lock trigger %s: %s", self.node, name, exc)
            self._broken = True
            return False
        if got:
            self._held.add(name)
            self._free_before.discard(name)
            self._snapshot.locks[key] = self._pid or 0
            log.info("node %s holds trigger %s", self.node, name)
            await self._unlock_claim(name)
        return got

    async def _claim(self, name: str) -> None:
        key = lease_key(CLAIM_NAMESPACE, name)
        try:
            got = bool(await self._query(
                lambda: self._conn.execute("SELECT pg_try_advisory_lock(%s)",
                                           (key,)).fetchone()[0]))
        except Exception as exc:
            log.warning("node %s: cannot claim trigger %s: %s", self.node, name, exc)
            self._broken = True
            return
        if got:
            self._claims.add(name)
            self._snapshot.locks[key] = self._pid or 0
            log.info("node %s claims trigger %s", self.node, name)

    async def _unlock(self, name: str) -> None:
        """Under the lock: unlock ``name``'s lease if held."""
        if name not in self._held:
            return
        self._held.discard(name)
        await self._unlock_key(lease_key(NAMESPACE, name))

    async def _unlock_claim(self, name: str) -> None:
        if name not in self._claims:
            return
        self._claims.discard(name)
        await self._unlock_key(lease_key(CLAIM_NAMESPACE, name))

    async def _unlock_key(self, key: int) -> None:
        self._snapshot.locks.pop(key, None)
        if self._conn is None or self._broken:
            return  # the connection goes, and its locks with it
        try:
            await self._query(
                lambda: self._conn.execute("SELECT pg_advisory_unlock(%s)", (key,)))
        except Exception as exc:
            # Still locked, maybe: the connection is dropped at the next beat, which stops
            # the sources of the other leases first.
            log.warning("node %s: cannot unlock a lease: %s", self.node, exc)
            self._broken = True

    def _drop_connection(self) -> None:
        """Under the lock, the sources of its leases stopped or being stopped: forget the
        connection and every lease and claim it held."""
        conn, self._conn = self._conn, None
        self._pid = None
        self._broken = False
        self._held.clear()
        self._claims.clear()
        self._snapshot = _Snapshot({}, {})
        if conn is not None:
            self._discard(conn)

    def _discard(self, conn: Any) -> None:
        """Close ``conn`` in the background, once a query stuck on it (if any) returned."""
        stuck, self._stuck = self._stuck, None

        async def close() -> None:
            if stuck is not None:
                with contextlib.suppress(BaseException):
                    await stuck
            with contextlib.suppress(Exception):
                await asyncio.to_thread(conn.close)

        task = asyncio.get_running_loop().create_task(close())
        self._background.add(task)
        task.add_done_callback(self._background.discard)


def leases_for(database_url: str, members: Members, clock: Clock, *,
               beat_s: float) -> Leases:
    """PostgresLeases on a PostgreSQL store (nodes may share it), else LocalLeases."""
    if sa.make_url(database_url).get_backend_name() == "postgresql":
        return PostgresLeases(database_url, members, clock, beat_s=beat_s)
    return LocalLeases(members.id)
