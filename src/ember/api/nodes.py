"""``GET /nodes``: the servers of the cluster (one on a single machine)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

from fastapi import APIRouter, Request

from ember.api.schemas import NodeList, NodeOut

router = APIRouter(tags=["system"])


@router.get("/nodes", response_model=NodeList)
async def list_nodes(request: Request) -> NodeList:
    """Every node that registered: alive (heartbeating), dead (silent longer than
    ``dead_after_s``) or stopped (it shut down cleanly)."""
    registry = request.app.state.services.nodes
    found = await asyncio.to_thread(registry.nodes)
    return NodeList(
        nodes=[NodeOut(
            id=n.id, address=n.address, version=n.version, state=n.state,
            started_at=datetime.fromtimestamp(n.started_at, UTC),
            heartbeat_at=datetime.fromtimestamp(n.heartbeat_at, UTC),
            capacity=n.capacity, load=n.load, this=n.this) for n in found],
        heartbeat_s=registry.heartbeat_s, dead_after_s=registry.dead_s,
    )
