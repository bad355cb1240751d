"""Routes of layers and their immutable versions."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response, status

from ember.api.schemas import (
    LayerList,
    LayerOut,
    LayerPublishIn,
    LayerPublishOut,
    LayerVersionList,
    LayerVersionOut,
)
from ember.control.layers import LayerService

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
    name: str, body: LayerPublishIn, request: Request, response: Response
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
def list_layer_versions(name: str, request: Request) -> LayerVersionList:
    found = _service(request).list_versions(name)
    return LayerVersionList(versions=[LayerVersionOut.of(v) for v in found])


@router.get("/layers/{name}/versions/{number}", response_model=LayerVersionOut)
def get_layer_version(name: str, number: int, request: Request) -> LayerVersionOut:
    return LayerVersionOut.of(_service(request).get_version(name, number))


@router.delete("/layers/{name}/versions/{number}", response_model=LayerVersionOut)
def delete_layer_version(name: str, number: int, request: Request) -> LayerVersionOut:
    """Delete one version; refused (Conflict) while a function's latest or one of its
    versions uses it."""
    return LayerVersionOut.of(_service(request).delete_version(name, number))
