"""The record of recent invocations of a function: one per sync call, async attempt or
trigger event, with its outcome, timings and error, from every node of the cluster."""

from __future__ import annotations

import asyncio
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse

from ember.api.params import LogCursor
from ember.api.schemas import InvocationList, InvocationOut
from ember.cluster.peers import node_scope
from ember.observability.cluster import ClusterView
from ember.observability.stats import InvocationRecord

router = APIRouter(tags=["invocation"])

Status = Literal["success", "error", "timeout", "throttled"]


def _out(r: InvocationRecord, node: str | None) -> InvocationOut:
    return InvocationOut(
        request_id=r.request_id, function=r.function, version=r.version, mode=r.mode,
        status=r.outcome, cold=r.cold, attempt=r.attempt, started_at=r.ts, init_ms=r.init_ms,
        duration_ms=r.run_ms, total_ms=r.total_ms, error_code=r.error_code,
        error_message=r.error_message, node=node,
    )


@router.get("/functions/{name}/invocations", response_model=InvocationList)
async def list_invocations(
    name: str,
    request: Request,
    status: Annotated[Status | None, Query(description="only invocations that ended so")] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    cursor: LogCursor = None,
) -> InvocationList | JSONResponse:
    """The function's recent invocations on every node, newest first (each node keeps its
    own for 7 days); ``nodes`` and ``unreachable`` say whose are listed and whose are
    missing."""
    services: Any = request.app.state.services
    await asyncio.to_thread(services.functions.get, name)
    view = ClusterView(services.nodes.id, services.logs, services.stats, services.peers)
    cursor = cursor or None
    if node_scope(request.headers):
        # For the node that asked: this node's page, with the cursor after each record.
        page = await asyncio.to_thread(view.local_invocations, name, status, limit, cursor)
        items = [{**_out(r, view.node).model_dump(mode="json"), "cursor": after}
                 for r, after in zip(page.items, page.cursors, strict=True)]
        return JSONResponse({"invocations": items, "next_cursor": page.next_cursor,
                             "nodes": [view.node], "unreachable": []})
    found = await view.invocations(name, status, limit, cursor)
    return InvocationList(invocations=[_out(r, node) for node, r in found.items],
                          next_cursor=found.next_cursor, nodes=found.nodes,
                          unreachable=found.unreachable)
