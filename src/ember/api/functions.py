"""Routes of functions, their code, versions and aliases."""

from __future__ import annotations

from typing import Annotated, cast

from fastapi import APIRouter, Query, Request, Response, status
from pydantic import BaseModel

from ember.api.auth import authorize_name
from ember.api.params import AliasName, Cursor, FunctionName
from ember.api.schemas import (
    AliasIn,
    AliasList,
    AliasOut,
    CodeIn,
    FunctionCreate,
    FunctionList,
    FunctionOut,
    FunctionPatch,
    PublishIn,
    PublishOut,
    VersionList,
    VersionOut,
)
from ember.control import FunctionService
from ember.errors import InvalidSpec, VersionNotFound
from ember.model.function import MAX_VERSION

router = APIRouter(tags=["functions"])


def _service(request: Request) -> FunctionService:
    service: FunctionService = request.app.state.services.functions
    return service


@router.post("/functions", status_code=status.HTTP_201_CREATED, response_model=FunctionOut)
def create_function(body: FunctionCreate, request: Request) -> FunctionOut:
    """Create a function from its config and a base64 zip of its code."""
    authorize_name(request, body.name)
    created = _service(request).create(
        body.name, body.config.to_json(), body.code.decode()
    )
    return FunctionOut.of(created)


@router.get("/functions", response_model=FunctionList)
def list_functions(
    request: Request,
    prefix: str = "",
    tag: Annotated[str | None, Query(description="key or key=value")] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    cursor: Cursor = None,
) -> FunctionList:
    page = _service(request).list_functions(prefix=prefix, tag=tag, limit=limit,
                                            cursor=cursor or None)
    return FunctionList(
        functions=[FunctionOut.of(f) for f in page.items], next_cursor=page.next_cursor
    )


@router.get("/functions/{name}", response_model=FunctionOut)
def get_function(name: FunctionName, request: Request) -> FunctionOut:
    return FunctionOut.of(_service(request).get(name))


@router.patch("/functions/{name}", response_model=FunctionOut)
def update_function(name: FunctionName, body: FunctionPatch, request: Request) -> FunctionOut:
    """Replace the given top-level config fields of ``latest``."""
    patch = cast(BaseModel, body.config).model_dump(exclude_unset=True, by_alias=True)
    return FunctionOut.of(_service(request).update_config(name, patch))


@router.put("/functions/{name}/code", response_model=FunctionOut)
def update_code(name: FunctionName, body: CodeIn, request: Request) -> FunctionOut:
    """Replace the code of ``latest``."""
    return FunctionOut.of(_service(request).update_code(name, body.decode()))


@router.get(
    "/functions/{name}/code",
    response_class=Response,
    responses={200: {"content": {"application/zip": {}}}},
)
def download_code(name: FunctionName, request: Request, qualifier: str = "latest") -> Response:
    """The zip archive of ``latest``, of a version, or of the version an alias points at."""
    service = _service(request)
    if qualifier == "latest":
        code = service.get(name).code
    elif qualifier.isdigit():
        code = service.get_version(name, _version_number(qualifier)).code
    else:
        alias = service.get_alias(name, qualifier)
        code = service.get_version(name, alias.version).code
    return Response(
        service.code_zip(code),
        media_type="application/zip",
        headers={"Content-Disposition": f'attachment; filename="{name}.zip"'},
    )


def _version_number(text: str) -> int:
    if not text.isascii() or not text.isdigit() or not 1 <= int(text) <= MAX_VERSION:
        raise InvalidSpec(
            f"{text!r} is not a version number: versions go from 1 to {MAX_VERSION}",
            {"field": "qualifier"},
        )
    return int(text)


def _stored_version(service: FunctionService, name: str, number: int) -> int:
    """``number`` when a version could have it; beyond the store's range no version does."""
    if not 1 <= number <= MAX_VERSION:
        service.get(name)  # FunctionNotFound first, as for any other version
        raise VersionNotFound(
            f"function {name!r} has no version {number}", {"function": name, "version": number}
        )
    return number


@router.delete("/functions/{name}", response_model=FunctionOut)
def delete_function(name: FunctionName, request: Request) -> FunctionOut:
    """Delete the function with all its versions and aliases."""
    return FunctionOut.of(_service(request).delete(name))


@router.post("/functions/{name}/disable", response_model=FunctionOut)
def disable_function(name: FunctionName, request: Request) -> FunctionOut:
    """Refuse invocations until enabled again."""
    return FunctionOut.of(_service(request).set_enabled(name, False))


@router.post("/functions/{name}/enable", response_model=FunctionOut)
def enable_function(name: FunctionName, request: Request) -> FunctionOut:
    return FunctionOut.of(_service(request).set_enabled(name, True))


@router.post(
    "/functions/{name}/versions",
    response_model=PublishOut,
    status_code=status.HTTP_201_CREATED,
    responses={200: {"model": PublishOut, "description": "latest was unchanged"}},
)
def publish_version(
    name: FunctionName, request: Request, response: Response,
    body: PublishIn | None = None,
) -> PublishOut:
    """Publish ``latest`` as a new immutable version."""
    version, created = _service(request).publish(name, body.description if body else "")
    if not created:
        response.status_code = status.HTTP_200_OK
    return PublishOut(**VersionOut.of(version).model_dump(), created=created)


@router.get("/functions/{name}/versions", response_model=VersionList)
def list_versions(name: FunctionName, request: Request) -> VersionList:
    return VersionList(versions=[VersionOut.of(v) for v in _service(request).list_versions(name)])


@router.get("/functions/{name}/versions/{number}", response_model=VersionOut)
def get_version(name: FunctionName, number: int, request: Request) -> VersionOut:
    service = _service(request)
    return VersionOut.of(service.get_version(name, _stored_version(service, name, number)))


@router.delete("/functions/{name}/versions/{number}", response_model=VersionOut)
def delete_version(name: FunctionName, number: int, request: Request) -> VersionOut:
    """Delete one version; refused while an alias points at it."""
    service = _service(request)
    return VersionOut.of(service.delete_version(name, _stored_version(service, name, number)))


@router.put("/functions/{name}/aliases/{alias}", response_model=AliasOut)
def set_alias(
    name: FunctionName, alias: AliasName, body: AliasIn, request: Request,
    response: Response,
) -> AliasOut:
    """Create or move an alias, optionally splitting traffic with a second version."""
    found, created = _service(request).set_alias(
        name, alias, version=body.version, additional_version=body.additional_version,
        weight=body.weight, description=body.description, async_config=body.async_,
    )
    if created:
        response.status_code = status.HTTP_201_CREATED
    return AliasOut.of(found)


@router.get("/functions/{name}/aliases", response_model=AliasList)
def list_aliases(name: FunctionName, request: Request) -> AliasList:
    return AliasList(aliases=[AliasOut.of(a) for a in _service(request).list_aliases(name)])


@router.get("/functions/{name}/aliases/{alias}", response_model=AliasOut)
def get_alias(name: FunctionName, alias: AliasName, request: Request) -> AliasOut:
    return AliasOut.of(_service(request).get_alias(name, alias))


@router.delete("/functions/{name}/aliases/{alias}", response_model=AliasOut)
def delete_alias(name: FunctionName, alias: AliasName, request: Request) -> AliasOut:
    return AliasOut.of(_service(request).delete_alias(name, alias))
