"""Routes of API keys (admin only): make one (its secret shown once), list, revoke; and the
audit of control-plane changes."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request, Response, status

from ember.api.schemas import AuditList, AuditOut, KeyCreated, KeyIn, KeyList, KeyOut
from ember.errors import InvalidRequest

router = APIRouter(tags=["keys"])


def _keys(request: Request) -> Any:
    return request.app.state.services.keys


@router.post("/keys", status_code=status.HTTP_201_CREATED, response_model=KeyCreated)
async def create_key(body: KeyIn, request: Request) -> KeyCreated:
    """Make a key. Its secret is in ``key``, shown this once: only a digest is kept."""
    token, key = await asyncio.to_thread(
        _keys(request).create, body.name, body.role, body.functions, body.expires_in_s)
    return KeyCreated(**KeyOut.of(key).model_dump(), key=token)


@router.get("/keys", response_model=KeyList)
async def list_keys(request: Request) -> KeyList:
    """Every key (never a secret)."""
    found = await asyncio.to_thread(_keys(request).list)
    return KeyList(keys=[KeyOut.of(k) for k in found])


@router.delete("/keys/{name}", status_code=status.HTTP_204_NO_CONTENT,
               response_class=Response)
async def revoke_key(name: str, request: Request) -> Response:
    """Revoke a key: requests with it are refused from now on."""
    await asyncio.to_thread(_keys(request).revoke, name)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.get("/audit", response_model=AuditList)
async def audit(
    request: Request,
    key: Annotated[str | None, Query(description="only this key's changes")] = None,
    since: Annotated[str | None, Query(description="ISO 8601 date and time",
                                       json_schema_extra={"format": "date-time"})] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> AuditList:
    """Control-plane changes, newest first: which key, what, on what, when, the answer."""
    after = None
    if since is not None:
        try:
            after = datetime.fromisoformat(since.replace("Z", "+00:00"))
        except ValueError:
            raise InvalidRequest("since must be an ISO 8601 date and time",
                                 {"field": "since"}) from None
        if after.tzinfo is None:
            after = after.replace(tzinfo=UTC)
    records = await asyncio.to_thread(
        request.app.state.services.key_store.audit_records, key=key, since=after, limit=limit)
    return AuditList(records=[AuditOut(**r.__dict__) for r in records])
