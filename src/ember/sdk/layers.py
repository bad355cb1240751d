"""The routes of layers: publish a zip as a layer's next version, list layers and their
versions, read and delete one version.

Like ``ember.sdk.calls``, each function returns a ``Call`` that both clients send.

A function uses layers through its config: ``{"layers": ["shared", "tools:3"]}``. A bare
name is pinned by the server to the layer's newest version when the function is created,
updated or published, so ``latest`` and published versions keep the exact versions they got.
A layer's ``python/`` directory (or, without one, its root) goes on the import path after
the function's own code, in the listed order.
"""

from __future__ import annotations

import base64

import httpx

from ember.api.schemas import (
    LayerList,
    LayerOut,
    LayerPublishOut,
    LayerVersionList,
    LayerVersionOut,
)
from ember.sdk.calls import Call, Code, _model, _segment, code_bytes


def _layer_path(name: str, *rest: str | int) -> str:
    return "/".join(["/layers", _segment(name), *(_segment(part) for part in rest)])


def publish_layer(name: str, code: Code, description: str = "") -> Call[LayerPublishOut]:
    """Publish ``code`` as the layer's next version; the layer is made on its first.

    Args:
        name: the layer's name: a letter, then up to 63 letters, digits, ``-`` or ``_``.
        code: the bytes of a zip, or the path of a directory (zipped) or of a ``.zip``.
        description: up to 256 characters.

    Returns:
        The version; ``created`` is False when the newest version already has the same
        content, which is returned instead of a new one.

    Raises:
        InvalidSpec: a bad name or description. InvalidCode: an unreadable or unsafe
        archive. PayloadTooLarge: the zip is over the server's code limit.
    """
    body = {"zip": base64.b64encode(code_bytes(code)).decode("ascii"),
            "description": description}
    return Call("POST", _layer_path(name, "versions"), _model(LayerPublishOut), json=body)


def list_layers() -> Call[list[LayerOut]]:
    """Every layer, by name, with its newest version number."""

    def parse(response: httpx.Response) -> list[LayerOut]:
        return LayerList.model_validate_json(response.content).layers

    return Call("GET", "/layers", parse)


def list_layer_versions(name: str) -> Call[list[LayerVersionOut]]:
    """Every version of the layer, oldest first.

    Raises:
        LayerNotFound: no such layer.
    """

    def parse(response: httpx.Response) -> list[LayerVersionOut]:
        return LayerVersionList.model_validate_json(response.content).versions

    return Call("GET", _layer_path(name, "versions"), parse)


def get_layer_version(name: str, version: int) -> Call[LayerVersionOut]:
    """One version of the layer.

    Raises:
        LayerNotFound: no such layer or version.
    """
    return Call("GET", _layer_path(name, "versions", version), _model(LayerVersionOut))


def delete_layer_version(name: str, version: int) -> Call[LayerVersionOut]:
    """Delete one version of the layer; returns what was deleted.

    Raises:
        LayerNotFound: no such layer or version. Conflict: a function's ``latest`` or one
        of its versions uses it (``details["used_by"]`` names them, ``fn:latest``, ``fn:2``).
    """
    return Call("DELETE", _layer_path(name, "versions", version), _model(LayerVersionOut))
