"""Routes of layers and their immutable versions."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response, status

from ember.api.params import LayerName
from ember.api.schemas import (
    LayerList,
    LayerOut,
    LayerPublishIn,
    LayerPublishOut,
    LayerVersionList,
    LayerVersionOut,
)
from ember.control.layers import LayerService
from ember.errors import LayerNotFound
from ember.model.function import MAX_VERSION

router = APIRouter(tags=["layers"])


def _service(request: Request) -> LayerService:
    service: LayerService = request.app.state.services.layers
    return service


@router.post(
    "/layers/{name}/versions",
    response_model=LayerPublishOut,
    status_code=status.HTTP_201_CREATED,
    responses={200: {"model": LayerPublishOut, "description": "the newest version is the same"}},
)
def publish_layer(
    name: LayerName, body: LayerPublishIn, request: Request, response: Response
) -> LayerPublishOut:
    """Publish a zip as the layer's next version (the layer is made on its first)."""
    version, created = _service(request).publish(name, body.decode(), body.description)
    if not created:
        response.status_code = status.HTTP_200_OK
    return LayerPublishOut(**LayerVersionOut.of(version).model_dump(), created=created)


@router.get("/layers", response_model=LayerList)
def list_layers(request: Request) -> LayerList:
    return LayerList(layers=[LayerOut.of(x) for x in _service(request).list_layers()])


@router.get("/layers/{name}/versions", response_model=LayerVersionList)
def list_layer_versions(name: LayerName, request: Request) -> LayerVersionList:
    found = _service(request).list_versions(name)
    return LayerVersionList(versions=[LayerVersionOut.of(v) for v in found])


@router.get("/layers/{name}/versions/{number}", response_model=LayerVersionOut)
def get_layer_version(name: LayerName, number: int, request: Request) -> LayerVersionOut:
    service = _service(request)
    return LayerVersionOut.of(service.get_version(name, _stored_version(service, name, number)))


@router.delete("/layers/{name}/versions/{number}", response_model=LayerVersionOut)
def delete_layer_version(name: LayerName, number: int, request: Request) -> LayerVersionOut:
    """Delete one version; refused (Conflict) while a function's latest or one of its
    versions uses it."""
    service = _service(request)
    return LayerVersionOut.of(
        service.delete_version(name, _stored_version(service, name, number))
    )


def _stored_version(service: LayerService, name: str, number: int) -> int:
    """``number`` when a version could have it; beyond the store's range no version does."""
    if not 1 <= number <= MAX_VERSION:
        service.list_versions(name)  # LayerNotFound for a layer that does not exist
        raise LayerNotFound(
            f"layer {name!r} has no version {number}", {"layer": name, "version": number}
        )
    return number
