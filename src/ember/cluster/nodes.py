"""Membership: every server registers as a node in the metadata store and heartbeats.

A node's id is kept in ``<home>/node.id`` (or set with ``EMBER_NODE_ID``), so a restarted
server is the same node. It heartbeats every ``node_heartbeat_s`` with its load; a node
whose last heartbeat is older than ``node_dead_s`` is **dead** (it crashed, or cannot reach
the store); one that stopped cleanly is **stopped**. Rows of nodes gone for a day are
removed.

**Draining** (``POST /nodes/{id}/drain``, ``ember node drain ID``) takes a node out of
service without stopping it: the drain is recorded in its row, so any node can ask for it
and the drained node learns of it at its next heartbeat (at once when asked of itself). A
draining node claims no more async events, hands its trigger leases over and serves new
invocations elsewhere (its listeners, ``on_drain``, do each); what it runs goes on to the
end. It is listed **draining** while its heartbeat still reports work (invocations in
flight, async attempts, trigger leases) and **drained** once there is none: it can then be
stopped with nothing lost. ``undrain`` puts it back; so does a restart.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import os
import re
import secrets
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import ember
from ember.clock import Clock
from ember.errors import NodeNotFound
from ember.store.nodes import NodeRow, SqlNodeStore

log = logging.getLogger(__name__)

NODE_ID_FILE = "node.id"
NODE_ID = re.compile(r"^[a-z0-9][a-z0-9._-]{0,63}$")
FORGET_AFTER_S = 24 * 3600.0
FORGET_EVERY_S = 600.0
ALIVE, DEAD, STOPPED = "alive", "dead", "stopped"
DRAINING, DRAINED = "draining", "drained"
# What a node's load reports as work still on it (each a count).
WORK = ("in_flight", "async", "leases")


def preferred(key: str, nodes: Iterable[str]) -> str | None:
    """The node preferred for ``key`` (a trigger, a version) among ``nodes``, None when
    there is none: rendezvous hashing, the highest hash of node and key. Every node computes
    the same from the same list, and a node joining or leaving moves only the keys it wins
    or won."""
    best: tuple[bytes, str] | None = None
    for node in nodes:
        score = hashlib.sha256(f"{node}\0{key}".encode()).digest()
        if best is None or score > best[0]:
            best = (score, node)
    return None if best is None else best[1]


def node_id(home: Path, configured: str | None) -> str:
    """The configured id, else the one kept in the home, else a new one (then kept)."""
    if configured:
        return configured
    path = home / NODE_ID_FILE
    with contextlib.suppress(FileNotFoundError):
        kept = path.read_text().strip()
        if NODE_ID.match(kept):
            return kept
    made = f"node-{secrets.token_hex(4)}"
    path.write_text(made + "\n")
    return made


@dataclass(frozen=True)
class Node:
    id: str
    address: str
    version: str
    state: str  # alive | draining | drained | dead | stopped
    started_at: float
    heartbeat_at: float
    capacity: dict[str, Any]
    load: dict[str, Any]
    this: bool  # the node that answered


class NodeRegistry:
    def __init__(self, store: SqlNodeStore, clock: Clock, *, node: str, address: str,
                 capacity: dict[str, Any], load: Callable[[], dict[str, Any]],
                 heartbeat_s: float, dead_s: float) -> None:
        self.id = node
        self._store = store
        self._clock = clock
        self._address = address
        self._capacity = capacity
        self._load = load
        self.heartbeat_s = heartbeat_s
        self.dead_s = dead_s
        self._task: asyncio.Task[None] | None = None
        self._forgot = float("-inf")
        self.draining = False
        self._rows: list[NodeRow] = []  # as of the last heartbeat: snapshot() reads them
        self._drain_listeners: list[Callable[[bool], Awaitable[None]]] = []
        self._drain_lock = asyncio.Lock()

    def on_drain(self, listener: Callable[[bool], Awaitable[None]]) -> None:
        """Call ``listener(draining)`` in the event loop when this node starts draining
        (True) or is put back in service (False)."""
        self._drain_listeners.append(listener)

    async def drain(self, node: str, draining: bool = True) -> None:
        """Drain node ``node`` (or put it back in service): recorded at once; this node
        follows at once, another at its next heartbeat. Raises NodeNotFound."""
        if not await asyncio.to_thread(self._store.set_draining, node, draining):
            raise NodeNotFound(f"no node {node!r}: `ember node list` shows the nodes",
                               {"node": node})
        if node == self.id:
            await self._follow(draining)

    async def _follow(self, draining: bool) -> None:
        async with self._drain_lock:
            if draining == self.draining:
                return
            self.draining = draining
            log.info("node %s %s", self.id,
                     "drains: no new work, leases handed over" if draining else
                     "is back in service")
            for listener in self._drain_listeners:
                try:
                    await listener(draining)
                except Exception:
                    log.exception("a drain listener of node %s failed", self.id)

    async def start(self) -> None:
        now = self._clock.time()
        row = NodeRow(self.id, self._address, ember.__version__, "running", now, now,
                      self._capacity, self._load())
        await asyncio.to_thread(self._store.register, row)
        self._rows = await asyncio.to_thread(self._store.all)
        log.info("node %s registered (%s)", self.id, self._address)
        self._task = asyncio.get_running_loop().create_task(self._beat())

    async def suspend(self) -> None:
        """Stop heartbeating without leaving: the other nodes see this one dead after
        ``dead_s``, as they would a crashed server or one cut off from the store."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
            try:
                await asyncio.to_thread(self._store.stop, self.id, self._clock.time())
            except Exception:
                log.exception("could not mark node %s stopped", self.id)

    async def _beat(self) -> None:
        failing = False
        while True:
            await self._clock.sleep(self.heartbeat_s)
            now = self._clock.time()
            try:
                forget = now - self._forgot >= FORGET_EVERY_S
                state = await asyncio.to_thread(self._write, now, self._load(), forget)
                if forget:
                    self._forgot = now
                if failing:
                    log.info("node %s heartbeats again", self.id)
                failing = False
            except Exception:
                if not failing:
                    log.exception("node %s could not heartbeat: other nodes will see it dead "
                                  "after %.0f s", self.id, self.dead_s)
                failing = True
            else:
                await self._follow(state == "draining")

    def _write(self, now: float, load: dict[str, Any], forget: bool) -> str:
        """One heartbeat, in a thread: refresh the row (made again if an operator removed
        it), and now and then remove the nodes gone for a day. Returns the state on record."""
        state = self._store.heartbeat(self.id, now, load)
        if state is None:
            state = "draining" if self.draining else "running"
            self._store.register(NodeRow(self.id, self._address, ember.__version__, state,
                                         now, now, self._capacity, load))
        if forget:
            self._store.forget(now - FORGET_AFTER_S)
        self._rows = self._store.all()
        return state

    def nodes(self) -> list[Node]:
        """Every known node, with its state as of now (reads the store)."""
        return self._of(self._store.all())

    def known(self) -> int:
        """How many nodes the last heartbeat read (alive or not): no I/O."""
        return len(self._rows)

    def snapshot(self) -> list[Node]:
        """Every node as this node's last heartbeat read them, states as of now: no I/O,
        for the invocation path (at most one heartbeat old)."""
        return self._of(self._rows)

    def _of(self, rows: list[NodeRow]) -> list[Node]:
        now = self._clock.time()
        return [Node(r.id, r.address, r.version, self._state(r, now), r.started_at,
                     r.heartbeat_at, r.capacity, r.load, r.id == self.id) for r in rows]

    def _state(self, row: NodeRow, now: float) -> str:
        if row.state == "stopped":
            return STOPPED
        if now - row.heartbeat_at > self.dead_s:
            return DEAD
        if row.state == "draining":
            busy = any(int(row.load.get(name) or 0) for name in WORK)
            return DRAINING if busy else DRAINED
        return ALIVE


def capacity(max_instances: int) -> dict[str, Any]:
    return {"max_instances": max_instances, "cpus": os.cpu_count() or 1}
