"""Routes of secrets: set a value, list and read names and times, delete. No route ever
answers with a value."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query, Request, Response, status

from ember.api.schemas import SecretIn, SecretList, SecretOut
from ember.model.function import SECRET_NAME_RE
from ember.secrets.service import SecretService
from ember.secrets.store import SecretInfo

router = APIRouter(tags=["secrets"])

SecretName = Annotated[str, Path(
    description="the secret's name (also the environment variable functions read it from)",
    json_schema_extra={"pattern": SECRET_NAME_RE.pattern},
)]


def _service(request: Request) -> SecretService:
    service: SecretService = request.app.state.services.secrets
    return service


def _out(secret: SecretInfo) -> SecretOut:
    return SecretOut(name=secret.name, created_at=secret.created_at,
                     updated_at=secret.updated_at)


@router.put(
    "/secrets/{name}",
    response_model=SecretOut,
    responses={201: {"model": SecretOut, "description": "the secret was made"}},
)
def put_secret(name: SecretName, body: SecretIn, request: Request,
               response: Response) -> SecretOut:
    """Set the secret's value (encrypted before it is stored); 201 when it is new. The
    answer holds its name and times only."""
    secret, created = _service(request).put(name, body.value)
    if created:
        response.status_code = status.HTTP_201_CREATED
    return _out(secret)


@router.get("/secrets", response_model=SecretList)
def list_secrets(request: Request) -> SecretList:
    """Every secret's name and times (never a value)."""
    return SecretList(secrets=[_out(s) for s in _service(request).list_secrets()])


@router.get("/secrets/{name}", response_model=SecretOut)
def get_secret(name: SecretName, request: Request) -> SecretOut:
    """The secret's name and times (never its value)."""
    return _out(_service(request).get(name))


@router.delete("/secrets/{name}", response_model=SecretOut)
def delete_secret(
    name: SecretName, request: Request,
    force: Annotated[bool, Query(description="delete even while functions list it")] = False,
) -> SecretOut:
    """Delete the secret; 409 Conflict naming the functions whose config lists it, unless
    ``force`` (then they cannot start instances until it is set again)."""
    return _out(_service(request).delete(name, force))
