"""What runs for a function now: its pools, the instances each wants and why, and each
instance with its state, requests in flight, times and memory — on every node of the
cluster, each naming its node; and instances started on request, ahead of the traffic (on
the node asked)."""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter, Request
from pydantic import ValidationError

from ember.api.schemas import (
    InstanceOut,
    InstancesOut,
    PoolOut,
    WarmIn,
    WarmOut,
    ZygoteOut,
)
from ember.cluster.peers import node_scope

router = APIRouter(tags=["functions"])
log = logging.getLogger(__name__)


def _when(ts: float) -> datetime:
    return datetime.fromtimestamp(ts, UTC)


@router.get("/functions/{name}/instances", response_model=InstancesOut)
async def list_instances(name: str, request: Request) -> InstancesOut:
    """The function's pools and instances now, on every node (``nodes``; ``unreachable``:
    the nodes that could not say)."""
    services: Any = request.app.state.services
    local = await _local(services, name)
    if services.peers is None or node_scope(request.headers):
        return local
    out = await services.peers.fan_out(f"/functions/{name}/instances")
    for answer in list(out.answers):
        try:
            theirs = InstancesOut.model_validate(answer.body)
        except ValidationError:  # a node of another Ember version, say: left out
            log.warning("node %s answered instances this node cannot read", answer.node)
            out.answers.remove(answer)
            out.unreachable = sorted([*out.unreachable, answer.node])
            continue
        local.pools += [p.model_copy(update={"node": answer.node}) for p in theirs.pools]
        local.instances += [i.model_copy(update={"node": answer.node})
                            for i in theirs.instances]
        local.zygotes += [z.model_copy(update={"node": answer.node}) for z in theirs.zygotes]
    local.nodes += out.nodes
    local.unreachable = out.unreachable
    return local


async def _local(services: Any, name: str) -> InstancesOut:
    """This node's pools, instances and zygotes."""
    now = await services.router.instances(name)
    node = services.nodes.id
    # Memory is read from /proc (smaps_rollup): off the event loop.
    parents = [z for z in await asyncio.to_thread(services.launcher.zygotes)
               if z.function == name]
    return InstancesOut(
        function=now.function,
        pools=[PoolOut(version=p.version, qualifiers=list(p.qualifiers), current=p.current,
                       starting=p.starting, desired=p.desired, reason=p.reason,
                       draining=p.draining, shortfall=p.shortfall, keep_alive=p.keep_alive,
                       node=node)
               for p in now.pools],
        instances=[InstanceOut(id=i.id, version=i.version, state=i.state,
                               in_flight=i.in_flight, started_at=_when(i.started_at),
                               last_used_at=_when(i.last_used_at), memory_mb=i.memory_mb,
                               node=node)
                   for i in now.instances],
        zygotes=[ZygoteOut(kind=z.kind, version=z.version, pid=z.pid, children=z.children,
                           rss_mb=_mib(z.rss_bytes), pss_mb=_mib(z.pss_bytes),
                           cgroup_mb=_mib(z.cgroup_bytes), modules=list(z.modules),
                           failed=dict(z.failed),
                           import_ms=round(z.import_ms, 1) if z.kind == "preloader" else None,
                           node=node)
                 for z in parents],
        nodes=[node],
    )


def _mib(size: int | None) -> float | None:
    return None if size is None else round(size / (1024 * 1024), 1)


@router.post("/functions/{name}/warm", response_model=WarmOut)
async def warm(name: str, body: WarmIn, request: Request) -> WarmOut:
    """Start instances of the version ``qualifier`` reaches now; they then live by
    keep_alive like any idle instance."""
    services: Any = request.app.state.services
    return WarmOut(started=await services.router.warm(name, body.qualifier, body.instances))
