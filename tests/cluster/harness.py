"""Several real ``ember server`` processes as one Ember: a fresh PostgreSQL database, one
Redis queue prefix and one master key shared; a home and a port each.

The cluster tests need PostgreSQL and Redis whichever database the rest of the run uses
(``EMBER_TEST_POSTGRES_URL``, default the local server; Redis on 6379). They skip, saying
so, where either does not answer — except under CI, where they fail.
"""

from __future__ import annotations

import base64
import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
import sqlalchemy as sa

from ember.settings import Settings
from tests.servers import Server, free_port, spawn
from tests.waiting import wait_until

PG_URL = os.environ.get("EMBER_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")
REDIS_URL = "redis://127.0.0.1:6379/0"


def _unavailable(what: str) -> None:
    if os.environ.get("CI") == "true":
        pytest.fail(f"{what} does not answer; CI runs the cluster tests on it")
    pytest.skip(f"{what} does not answer: the cluster tests need it")


class Cluster:
    """Nodes started by name, sharing ``database_url``, the Redis queue under ``prefix`` and
    one master key. ``start`` returns once the node answers ``/healthz``."""

    def __init__(self, root: Path, database_url: str, prefix: str, **settings: str) -> None:
        self.root = root
        self.database_url = database_url
        self.prefix = prefix
        self.master_key = base64.b64encode(os.urandom(32)).decode()
        self.settings = settings
        self.nodes: dict[str, Server] = {}
        self._ports: dict[str, int] = {}

    def start(self, name: str, *, wait: bool = True, **settings: str) -> Server:
        """Start node ``name`` (again, after a stop or a kill: same home, id and port)."""
        port = self._ports.setdefault(name, free_port())
        merged = {
            "database_url": self.database_url, "queue_url": REDIS_URL,
            "queue_prefix": self.prefix, "master_key": self.master_key,
            "node_id": name, "node_heartbeat_s": "0.5", "node_dead_s": "3",
            **self.settings, **settings,
        }
        server = self.nodes[name] = spawn(self.root / name, port, **merged)
        if wait:
            server.wait_ready()
        return server

    def __getitem__(self, name: str) -> Server:
        return self.nodes[name]

    def stop(self, name: str) -> None:
        self.nodes[name].stop()

    def kill(self, name: str) -> None:
        """``kill -9`` node ``name``."""
        self.nodes[name].kill()

    def close(self) -> None:
        for server in self.nodes.values():
            server.stop()

    def logs(self) -> str:
        """Every node's log, for a failing assertion's message."""
        return "\n".join(f"===== {name}\n{server.log()[-6000:]}"
                         for name, server in self.nodes.items())


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    """A cluster on a PostgreSQL database of its own (dropped after) and a Redis prefix of
    its own (deleted after). Start its nodes with ``cluster.start("a")``."""
    admin_url = Settings(database_url=PG_URL).resolved_database_url()
    try:
        admin = sa.create_engine(admin_url, isolation_level="AUTOCOMMIT",
                                 connect_args={"connect_timeout": 3})
        with admin.connect():
            pass
    except sa.exc.OperationalError:
        _unavailable(f"PostgreSQL at {PG_URL}")
    client = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=3)
    try:
        client.ping()
    except redis.RedisError:
        _unavailable(f"Redis at {REDIS_URL}")
    name = f"ember_cluster_{uuid.uuid4().hex[:10]}"
    with admin.connect() as conn:
        conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
    url = sa.make_url(admin_url).set(database=name).render_as_string(hide_password=False)
    prefix = f"ember-cluster-{uuid.uuid4().hex[:8]}"
    made = Cluster(tmp_path, url, prefix)
    try:
        yield made
    finally:
        made.close()
        with admin.connect() as conn:
            conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.dispose()
        for key in client.scan_iter(f"{prefix}*"):
            client.delete(key)
        client.close()


def wait_alive(cluster: Cluster, names: list[str], on: str) -> None:
    """Until node ``on`` lists every node of ``names`` alive."""
    from tests import apicalls as api

    def all_alive() -> bool:
        listed = api.get(f"{cluster[on].url}/nodes").json()["nodes"]
        alive = {n["id"] for n in listed if n["state"] == "alive"}
        return set(names) <= alive

    wait_until(all_alive, timeout=30, interval=0.1, message=f"nodes {names} alive on {on}")


def wait_known(cluster: Cluster, names: list[str]) -> None:
    """Until every node of ``names`` is alive and has heartbeaten since the last of them
    started: each node's snapshot of the others (read right after its own heartbeat, and
    what placement decides on) then holds them all."""
    from datetime import datetime

    from tests import apicalls as api

    def known() -> bool:
        listed = api.get(f"{cluster[names[0]].url}/nodes").json()["nodes"]
        nodes = {n["id"]: n for n in listed if n["id"] in names and n["state"] == "alive"}
        if set(nodes) != set(names):
            return False
        last_start = max(datetime.fromisoformat(n["started_at"]) for n in nodes.values())
        return all(datetime.fromisoformat(n["heartbeat_at"]) > last_start
                   for n in nodes.values())

    wait_until(known, timeout=30, interval=0.1, message=f"nodes {names} know each other")
