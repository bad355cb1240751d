"""What runs for a function now: its pools, the instances each wants and why, and each
instance with its state, requests in flight, times and memory; and instances started on
request, ahead of the traffic."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter, Request

from ember.api.schemas import InstanceOut, InstancesOut, PoolOut, WarmIn, WarmOut

router = APIRouter(tags=["functions"])


def _when(ts: float) -> datetime:
    return datetime.fromtimestamp(ts, UTC)


@router.get("/functions/{name}/instances", response_model=InstancesOut)
async def list_instances(name: str, request: Request) -> InstancesOut:
    """The function's pools and instances on this server now."""
    services: Any = request.app.state.services
    now = await services.router.instances(name)
    return InstancesOut(
        function=now.function,
        pools=[PoolOut(version=p.version, qualifiers=list(p.qualifiers), current=p.current,
                       starting=p.starting, desired=p.desired, reason=p.reason,
                       draining=p.draining, shortfall=p.shortfall, keep_alive=p.keep_alive)
               for p in now.pools],
        instances=[InstanceOut(id=i.id, version=i.version, state=i.state,
                               in_flight=i.in_flight, started_at=_when(i.started_at),
                               last_used_at=_when(i.last_used_at), memory_mb=i.memory_mb)
                   for i in now.instances],
    )


@router.post("/functions/{name}/warm", response_model=WarmOut)
async def warm(name: str, body: WarmIn, request: Request) -> WarmOut:
    """Start instances of the version ``qualifier`` reaches now; they then live by
    keep_alive like any idle instance."""
    services: Any = request.app.state.services
    return WarmOut(started=await services.router.warm(name, body.qualifier, body.instances))
