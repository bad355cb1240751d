"""``GET /nodes``: the servers of the cluster (one on a single machine); ``POST
/nodes/{id}/drain`` and ``/undrain`` take one out of service and back."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, Path, Request

from ember.api.schemas import NodeList, NodeOut
from ember.cluster.nodes import NODE_ID, Node
from ember.errors import NodeNotFound

router = APIRouter(tags=["system"])


@router.get("/nodes", response_model=NodeList)
async def list_nodes(request: Request) -> NodeList:
    """Every node that registered: alive (heartbeating), dead (silent longer than
    ``dead_after_s``) or stopped (it shut down cleanly)."""
    registry = request.app.state.services.nodes
    found = await asyncio.to_thread(registry.nodes)
    return NodeList(nodes=[_out(n) for n in found], heartbeat_s=registry.heartbeat_s,
                    dead_after_s=registry.dead_s)


NodeId = Annotated[str, Path(pattern=NODE_ID.pattern, max_length=64)]


@router.post("/nodes/{node}/drain", response_model=NodeOut)
async def drain_node(node: NodeId, request: Request) -> NodeOut:
    """Take the node out of service: it claims no new async events, hands its trigger
    leases to other nodes and sends new invocations elsewhere, finishing what it runs. It
    shows ``draining``, then ``drained`` once nothing is left on it (within a heartbeat or
    two of its last work ending): then it can be stopped with nothing lost."""
    return await _set_draining(request, node, True)


@router.post("/nodes/{node}/undrain", response_model=NodeOut)
async def undrain_node(node: NodeId, request: Request) -> NodeOut:
    """Put a draining node back in service (a restart does too)."""
    return await _set_draining(request, node, False)


async def _set_draining(request: Request, node: str, draining: bool) -> NodeOut:
    registry = request.app.state.services.nodes
    await registry.drain(node, draining)
    for found in await asyncio.to_thread(registry.nodes):
        if found.id == node:
            return _out(found)
    raise NodeNotFound(f"no node {node!r}", {"node": node})  # removed meanwhile


def _out(n: Node) -> NodeOut:
    return NodeOut(
        id=n.id, address=n.address, version=n.version, state=n.state,
        started_at=datetime.fromtimestamp(n.started_at, UTC),
        heartbeat_at=datetime.fromtimestamp(n.heartbeat_at, UTC),
        capacity=n.capacity, load=n.load, this=n.this)
