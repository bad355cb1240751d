"""The record of recent invocations of a function: one per sync call, async attempt or
trigger event, with its outcome, timings and error."""

from __future__ import annotations

import asyncio
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Request

from ember.api.schemas import InvocationList, InvocationOut
from ember.observability.stats import InvocationRecord

router = APIRouter(tags=["invocation"])

Status = Literal["success", "error", "timeout", "throttled"]


def _out(r: InvocationRecord) -> InvocationOut:
    return InvocationOut(
        request_id=r.request_id, function=r.function, version=r.version, mode=r.mode,
        status=r.outcome, cold=r.cold, attempt=r.attempt, started_at=r.ts, init_ms=r.init_ms,
        duration_ms=r.run_ms, total_ms=r.total_ms, error_code=r.error_code,
        error_message=r.error_message,
    )


@router.get("/functions/{name}/invocations", response_model=InvocationList)
async def list_invocations(
    name: str,
    request: Request,
    status: Annotated[Status | None, Query(description="only invocations that ended so")] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    cursor: Annotated[
        str | None,
        Query(pattern=r"^[0-9]{1,18}$", description="next_cursor of an earlier answer"),
    ] = None,
) -> InvocationList:
    """The function's recent invocations, newest first (kept for 7 days on this server)."""
    services: Any = request.app.state.services
    await asyncio.to_thread(services.functions.get, name)
    await asyncio.to_thread(services.stats.flush)
    page = await asyncio.to_thread(
        services.stats.invocations, name, outcome=status, limit=limit, cursor=cursor
    )
    return InvocationList(invocations=[_out(r) for r in page.items],
                          next_cursor=page.next_cursor)
