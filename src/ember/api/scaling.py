"""Provisioned capacity per function qualifier: a target count kept up, scheduled actions,
target tracking, and idle mode."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request

from ember.api.schemas import QUALIFIER_PATTERN, ProvisionedOut, ProvisionedStateOut
from ember.model.scaling import Provisioned, ProvisionedConfig, ProvisionedStatus

router = APIRouter(tags=["functions"])

Qualifier = Annotated[str, Query(
    pattern=QUALIFIER_PATTERN, max_length=64,
    description="latest, a version number or an alias",
)]


def _when(ts: float | None) -> datetime | None:
    return None if ts is None else datetime.fromtimestamp(ts, UTC)


def out(entry: Provisioned, status: ProvisionedStatus) -> ProvisionedOut:
    return ProvisionedOut(
        function=entry.function, qualifier=entry.qualifier, config=entry.config,
        state=ProvisionedStateOut(
            target=entry.target, desired=status.desired, reason=status.reason,
            versions=status.versions, current=status.current, frozen=status.frozen,
            shortfall=status.shortfall, utilization=status.metric,
            last_action=entry.last_action, next_action_at=_when(status.next_action),
            updated_at=datetime.fromtimestamp(entry.updated_at, UTC),
        ),
    )


@router.put("/functions/{name}/provisioned", response_model=ProvisionedOut)
async def put_provisioned(name: str, body: ProvisionedConfig, request: Request,
                          qualifier: Qualifier = "latest") -> ProvisionedOut:
    """Set (replace) the provisioned capacity of ``name`` at ``qualifier``: instances kept
    up beyond traffic, within max_instances and the server's limit."""
    services: Any = request.app.state.services
    return out(*await services.scaler.put(name, _qualifier(qualifier), body))


@router.get("/functions/{name}/provisioned", response_model=ProvisionedOut)
async def get_provisioned(name: str, request: Request,
                          qualifier: Qualifier = "latest") -> ProvisionedOut:
    """The provisioned capacity of ``name`` at ``qualifier`` and where it stands."""
    services: Any = request.app.state.services
    return out(*await services.scaler.get(name, _qualifier(qualifier)))


@router.get("/functions/{name}/provisioned/all", response_model=list[ProvisionedOut])
async def list_provisioned(name: str, request: Request) -> list[ProvisionedOut]:
    """Every qualifier of ``name`` with provisioned capacity."""
    services: Any = request.app.state.services
    await services.router.resolve(name, None)  # FunctionNotFound
    return [out(*pair) for pair in await services.scaler.list(name)]


@router.delete("/functions/{name}/provisioned", response_model=ProvisionedOut)
async def delete_provisioned(name: str, request: Request,
                             qualifier: Qualifier = "latest") -> ProvisionedOut:
    """Remove the policy; its instances then live by keep-alive like any other."""
    services: Any = request.app.state.services
    entry = await services.scaler.delete(name, _qualifier(qualifier))
    return out(entry, ProvisionedStatus(0, "removed"))


def _qualifier(value: str) -> str:
    return "latest" if value == "$LATEST" else value
