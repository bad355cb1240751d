"""The lease manager on a real PostgreSQL: several managers (one per node id) on one
database, each beat driven by the test (a manual clock), the nodes registered for real.

Exactly one node holds a lease; a node whose connection is killed loses every lease at its
next beat and another takes them; leases spread by preference, handed over through claims;
a released or closed lease is taken by another node."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any

import psycopg
import pytest
import sqlalchemy as sa

from ember.clock import ManualClock
from ember.cluster.leases import (
    APPLICATION,
    LocalLeases,
    PostgresLeases,
    application_name,
    lease_key,
)
from ember.cluster.nodes import NodeRegistry, preferred
from ember.store.migrate import upgrade
from ember.store.nodes import SqlNodeStore
from tests.cluster.harness import Cluster
from tests.waiting import wait_until


class Sources:
    """The owner of one node's leases: which sources run, and what happened, in order."""

    def __init__(self, leases: PostgresLeases | LocalLeases) -> None:
        self.leases = leases
        self.running: set[str] = set()
        self.log: list[tuple[str, str]] = []

    async def lease_gained(self, name: str) -> None:
        self.running.add(name)
        self.log.append(("gained", name))

    async def lease_lost(self, name: str) -> None:
        self.running.discard(name)
        self.log.append(("lost", name))


class Node:
    def __init__(self, leases: PostgresLeases, sources: Sources, registry: NodeRegistry):
        self.leases = leases
        self.sources = sources
        self.registry = registry

    @property
    def id(self) -> str:
        return self.leases.node

    async def want(self, *names: str) -> dict[str, bool]:
        """Acquire each of ``names`` as the supervisor does when it learns of a trigger;
        the ones held start their source."""
        got = {}
        for name in names:
            got[name] = await self.leases.acquire(name)
            if got[name]:
                self.sources.running.add(name)
        return got

    def held(self, names: list[str]) -> set[str]:
        return {name for name in names if self.leases.holder(name) == self.id
                and name in self.sources.running}


@pytest.fixture
def database(cluster: Cluster) -> Iterator[str]:
    """The cluster's fresh PostgreSQL database, migrated (no server started)."""
    engine = sa.create_engine(sa.make_url(cluster.database_url).set(
        drivername="postgresql+psycopg"))
    upgrade(engine)
    engine.dispose()
    yield cluster.database_url


@asynccontextmanager
async def nodes(database: str, *ids: str) -> AsyncIterator[list[Node]]:
    """A registered node with its lease manager (started, beats only when asked) per id."""
    url = str(sa.make_url(database).set(drivername="postgresql+psycopg")
              .render_as_string(hide_password=False))
    engine = sa.create_engine(url)
    clock = ManualClock()
    made: list[Node] = []
    async with AsyncExitStack() as stack:
        for node_id in ids:
            registry = NodeRegistry(SqlNodeStore(engine), clock, node=node_id,
                                    address=f"http://{node_id}", capacity={}, load=dict,
                                    heartbeat_s=1, dead_s=10)
            await registry.start()
            stack.push_async_callback(registry.close)
            leases = PostgresLeases(url, registry, clock, beat_s=1)
            sources = Sources(leases)
            await leases.start(sources)
            stack.push_async_callback(leases.close)
            made.append(Node(leases, sources, registry))
        yield made
    engine.dispose()


def run(scenario: Callable[[], Coroutine[Any, Any, None]]) -> None:
    asyncio.run(scenario())


def _libpq(database: str) -> str:
    return str(sa.make_url(database).set(drivername="postgresql")
               .render_as_string(hide_password=False))


def wait_gone(database: str, pid: int) -> None:
    """Until backend ``pid`` has exited and its locks are free."""
    with psycopg.connect(_libpq(database), autocommit=True) as admin:
        def gone() -> bool:
            row = admin.execute(
                "SELECT (SELECT count(*) FROM pg_locks WHERE pid = %s)"
                " + (SELECT count(*) FROM pg_stat_activity WHERE pid = %s)",
                (pid, pid)).fetchone()
            return row is not None and row[0] == 0

        wait_until(gone, message=f"backend {pid} gone with its locks")


def lease_pid(node: Node) -> int:
    pid = node.leases._pid
    assert pid is not None, f"node {node.id} has no lease connection"
    return pid


def kill_connection(database: str, node: Node) -> None:
    """End node's lease connection from outside, as a crash of its server would."""
    pid = lease_pid(node)
    with psycopg.connect(_libpq(database), autocommit=True) as admin:
        admin.execute("SELECT pg_terminate_backend(%s)", (pid,))
    wait_gone(database, pid)


async def beats(*sequence: Node) -> None:
    for node in sequence:
        await node.leases.beat()


def split(names: list[str], ids: list[str]) -> dict[str, set[str]]:
    by_node: dict[str, set[str]] = {node: set() for node in ids}
    for name in names:
        winner = preferred(name, ids)
        assert winner is not None
        by_node[winner].add(name)
    return by_node


def test_exactly_one_node_holds_a_lease_and_every_node_sees_which(database: str) -> None:
    async def scenario() -> None:
        async with nodes(database, "a", "b") as (a, b):
            assert await a.want("t1") == {"t1": True}
            assert await b.want("t1") == {"t1": False}
            assert a.leases.holder("t1") == "a"
            await beats(a, b)  # b's beat reads the locks: it sees a holding
            assert b.leases.holder("t1") == "a"
            assert (a.leases.count(), b.leases.count()) == (1, 0)
            assert a.leases.holder("nothing") is None

    run(scenario)


def test_a_node_whose_connection_dies_loses_its_leases_and_another_takes_them(
    database: str,
) -> None:
    async def scenario() -> None:
        async with nodes(database, "a", "b") as (a, b):
            # One trigger preferred by each: b takes over both, the one it is preferred
            # for at its first beat, the other (a, still alive to it, is preferred) once it
            # stayed free a whole beat.
            names = [f"t{i}" for i in range(40)]
            by = split(names, ["a", "b"])
            mine_a, mine_b = sorted(by["a"])[0], sorted(by["b"])[0]
            assert await a.want(mine_a, mine_b) == {mine_a: True, mine_b: True}
            await b.want(mine_a, mine_b)
            kill_connection(database, a)  # a's server is gone: it never beats again
            await beats(b)
            assert b.held([mine_a, mine_b]) == {mine_b}
            await beats(b)
            assert b.held([mine_a, mine_b]) == {mine_a, mine_b}
            assert ("gained", mine_a) in b.sources.log

    run(scenario)


def test_a_lost_connection_stops_the_sources_at_the_next_beat_then_competes_again(
    database: str,
) -> None:
    async def scenario() -> None:
        async with nodes(database, "a") as (a,):
            await a.want("x", "y")
            kill_connection(database, a)
            await beats(a)
            # Lost and stopped first, then taken again on the new connection.
            assert a.sources.log == [("lost", "x"), ("lost", "y"), ("gained", "x"),
                                     ("gained", "y")]
            assert a.sources.running == {"x", "y"}
            assert a.leases.holder("x") == "a"

    run(scenario)


def test_ten_triggers_spread_over_two_nodes_by_preference_through_claims(
    database: str,
) -> None:
    async def scenario() -> None:
        names = [f"spread-{i}" for i in range(10)]
        by = split(names, ["a", "b"])
        assert by["a"] and by["b"], by  # these names give each node a share
        async with nodes(database, "a", "b") as (a, b):
            assert all((await a.want(*names)).values())  # a came first: it holds all
            assert not any((await b.want(*names)).values())
            await beats(b)  # b claims its share
            await beats(a)  # a stops those sources, then unlocks
            assert a.held(names) == by["a"]
            assert [entry for entry in a.sources.log if entry[0] == "lost"] == [
                ("lost", name) for name in sorted(by["b"])]
            await beats(b)  # b takes them and drops its claims
            assert b.held(names) == by["b"]
            for _ in range(3):  # and it stays so
                await beats(a, b)
            assert (a.held(names), b.held(names)) == (by["a"], by["b"])
            for node in (a, b):
                assert {name: node.leases.holder(name) for name in names} == {
                    name: preferred(name, ["a", "b"]) for name in names}

    run(scenario)


def test_a_node_that_does_not_want_a_trigger_never_takes_or_claims_it(database: str) -> None:
    async def scenario() -> None:
        names = [f"only-a-{i}" for i in range(10)]
        async with nodes(database, "a", "b") as (a, b):
            await a.want(*names)
            for _ in range(3):
                await beats(a, b)
            assert a.held(names) == set(names)  # b, preferred for some, does not know them

    run(scenario)


def test_released_and_closed_leases_are_taken_by_another_node(database: str) -> None:
    async def scenario() -> None:
        async with nodes(database, "a", "b") as (a, b):
            await a.want("r1", "r2", "r3")
            await b.want("r1", "r2", "r3")
            await a.leases.release("r1")  # the trigger was disabled on a
            await beats(b, b)
            assert "r1" in b.held(["r1"])
            pid = lease_pid(a)
            await a.leases.close()  # a stops: its sources stopped first, then this
            wait_gone(database, pid)
            await beats(b, b)
            assert b.held(["r1", "r2", "r3"]) == {"r1", "r2", "r3"}

    run(scenario)


def test_a_draining_node_hands_everything_over_and_takes_nothing(database: str) -> None:
    async def scenario() -> None:
        names = [f"drain-{i}" for i in range(6)]
        async with nodes(database, "a", "b") as (a, b):
            await a.want(*names)
            await b.want(*names)
            await a.leases.drain(True)
            assert a.held(names) == set() and a.leases.count() == 0
            await beats(b, b, a, b)
            assert b.held(names) == set(names)
            await a.leases.drain(False)
            await beats(a, b, a, b)  # a claims its share back
            assert a.held(names) == split(names, ["a", "b"])["a"]

    run(scenario)


def test_a_long_node_id_is_named_by_a_digest_and_still_seen_as_the_holder(
    database: str,
) -> None:
    long_id = "n" * 60
    assert not application_name(long_id).startswith(APPLICATION)
    assert len(application_name(long_id)) <= 63

    async def scenario() -> None:
        async with nodes(database, long_id, "b") as (long_node, b):
            await long_node.want("held-by-long")
            await beats(b)
            assert b.leases.holder("held-by-long") == long_id

    run(scenario)


def test_keys_are_stable_and_namespaced() -> None:
    assert lease_key("ember.trigger", "t") == lease_key("ember.trigger", "t")
    assert lease_key("ember.trigger", "t") != lease_key("ember.trigger.claim", "t")
    assert -(2**63) <= lease_key("ember.trigger", "t") < 2**63


def test_alone_every_lease_is_granted() -> None:
    async def scenario() -> None:
        leases = LocalLeases("solo")
        sources = Sources(leases)
        await leases.start(sources)
        assert await leases.acquire("t")
        assert leases.holder("t") == "solo"
        await leases.drain(True)
        assert leases.holder("t") is None and sources.log == [("lost", "t")]
        await leases.drain(False)
        assert leases.holder("t") == "solo" and sources.running == {"t"}
        await leases.release("t")
        assert leases.holder("t") is None

    run(scenario)
