"""Membership: every server is a node that registers and heartbeats in the metadata store;
``GET /nodes`` and ``ember node list`` show them alive, dead (silent too long) or stopped."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from pydantic import ValidationError

from ember.clock import ManualClock
from ember.cluster.nodes import NODE_ID_FILE
from ember.settings import Settings
from tests.inprocess import running
from tests.router.test_invoke import tick
from tests.waiting import until


def shared(home: Path, database: Path | None = None, **extra: object) -> Settings:
    """A server's settings; servers given one ``database`` share their metadata (on
    PostgreSQL, when the tests run there, they share it anyway)."""
    import os

    url = os.environ.get("EMBER_DATABASE_URL") or (
        f"sqlite:///{database}" if database is not None else None)
    return Settings(home=home, database_url=url, **extra)  # type: ignore[arg-type]


def test_a_server_registers_heartbeats_and_stops(tmp_path: Path) -> None:
    clock = ManualClock()
    settings = shared(tmp_path / "a", tmp_path / "meta.db", node_heartbeat_s=2,
                      node_dead_s=10)

    async def main() -> None:
        async with running(settings, clock) as ember:
            listed = (await ember.http.get("/nodes")).json()
            mine = [n for n in listed["nodes"] if n["this"]]
            assert len(mine) == 1, listed
            node = mine[0]
            assert node["state"] == "alive" and node["address"].startswith("http://")
            assert node["capacity"]["max_instances"] == settings.max_instances
            assert listed["heartbeat_s"] == 2 and listed["dead_after_s"] == 10
            first = node["heartbeat_at"]
            await until(lambda: clock.sleeping() > 0, message="the heartbeat asleep")
            await tick(clock, 2)

            # tick() returns once the heartbeat loop is asleep again: its write is done.
            nodes = (await ember.http.get("/nodes")).json()["nodes"]
            assert next(n for n in nodes if n["this"])["heartbeat_at"] != first
            node_id = node["id"]
        # Stopped cleanly: the next server on the same store sees it stopped, not dead.
        async with running(shared(tmp_path / "b", tmp_path / "meta.db"), clock) as other:
            nodes = {n["id"]: n for n in (await other.http.get("/nodes")).json()["nodes"]}
            assert nodes[node_id]["state"] == "stopped"
            assert len([n for n in nodes.values() if n["this"]]) == 1

    asyncio.run(main())


def test_a_silent_node_is_dead_to_the_others(tmp_path: Path) -> None:
    clock = ManualClock()

    async def main() -> None:
        async with running(shared(tmp_path / "a", tmp_path / "meta.db"), clock) as a, \
                running(shared(tmp_path / "b", tmp_path / "meta.db"), clock) as b:
            ids = {n["id"]: n["state"] for n in (await b.http.get("/nodes")).json()["nodes"]}
            a_id = a.services.nodes.id
            assert ids[a_id] == "alive" and ids[b.services.nodes.id] == "alive"
            # A stops heartbeating (as a crashed or cut-off server would); B still does.
            await a.services.nodes.suspend()
            for _ in range(6):
                await tick(clock, 2)
            states = {n["id"]: n["state"]
                      for n in (await b.http.get("/nodes")).json()["nodes"]}
            assert states[a_id] == "dead" and states[b.services.nodes.id] == "alive"

    asyncio.run(main())


def test_the_node_id_is_kept_in_the_home_or_set(tmp_path: Path) -> None:
    async def started(settings: Settings) -> str:
        async with running(settings, ManualClock()) as ember:
            node: str = ember.services.nodes.id
            return node

    first = asyncio.run(started(shared(tmp_path / "a")))
    assert (tmp_path / "a" / NODE_ID_FILE).read_text().strip() == first
    assert asyncio.run(started(shared(tmp_path / "a"))) == first
    assert asyncio.run(started(shared(tmp_path / "c", node_id="edge-1"))) == "edge-1"
    with pytest.raises(ValidationError) as refused:
        Settings(home=tmp_path / "d", node_id="Not A Node!")
    assert "node_id" in str(refused.value)
