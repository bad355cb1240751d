"""The nodes of a cluster in the metadata store: each server's row, refreshed by its
heartbeat."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from ember.store.schema import nodes
from ember.store.sql import write_transaction


@dataclass(frozen=True)
class NodeRow:
    id: str
    address: str
    version: str
    state: str  # "running" while it heartbeats, "draining" once drained, "stopped" once it
    # stopped cleanly
    started_at: float
    heartbeat_at: float
    capacity: dict[str, Any]
    load: dict[str, Any]


class SqlNodeStore:
    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    def register(self, row: NodeRow) -> None:
        """Insert the node, or replace what a previous run of it left."""
        with write_transaction(self._engine) as conn:
            conn.execute(nodes.delete().where(nodes.c.id == row.id))
            conn.execute(nodes.insert().values(**_values(row)))

    def heartbeat(self, node_id: str, at: float, load: dict[str, Any]) -> str | None:
        """Refresh the node's heartbeat; returns its state on record ("running" or
        "draining": a drain asked through another node reaches this one so), or None when
        its row is gone (removed by an operator)."""
        with write_transaction(self._engine) as conn:
            conn.execute(nodes.update().where(nodes.c.id == node_id).values(
                heartbeat_at=at, load=load,
                state=sa.case((nodes.c.state == "draining", "draining"), else_="running")))
            state = conn.execute(
                sa.select(nodes.c.state).where(nodes.c.id == node_id)).scalar_one_or_none()
        return None if state is None else str(state)

    def set_draining(self, node_id: str, draining: bool) -> bool:
        """Mark a running node draining, or running again; False when there is no such
        node. A stopped node stays stopped (it starts again running)."""
        with write_transaction(self._engine) as conn:
            found = conn.execute(
                sa.select(nodes.c.state).where(nodes.c.id == node_id)).scalar_one_or_none()
            if found is None:
                return False
            if found != "stopped":
                conn.execute(nodes.update().where(nodes.c.id == node_id).values(
                    state="draining" if draining else "running"))
        return True

    def stop(self, node_id: str, at: float) -> None:
        with write_transaction(self._engine) as conn:
            conn.execute(nodes.update().where(nodes.c.id == node_id).values(
                state="stopped", heartbeat_at=at))

    def all(self) -> list[NodeRow]:
        with self._engine.connect() as conn:
            rows = conn.execute(sa.select(nodes).order_by(nodes.c.started_at, nodes.c.id))
            return [NodeRow(**dict(r)) for r in rows.mappings()]

    def forget(self, before: float) -> int:
        """Remove the nodes whose last heartbeat is older than ``before``."""
        with write_transaction(self._engine) as conn:
            done = conn.execute(nodes.delete().where(nodes.c.heartbeat_at < before))
        return int(done.rowcount or 0)


def _values(row: NodeRow) -> dict[str, Any]:
    return {"id": row.id, "address": row.address, "version": row.version, "state": row.state,
            "started_at": row.started_at, "heartbeat_at": row.heartbeat_at,
            "capacity": row.capacity, "load": row.load}
