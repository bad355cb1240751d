"""The lifecycle of layers: publish, read and delete their versions, and pin the layers a
function lists to exact versions."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

from ember.artifacts import ArtifactStore
from ember.control.functions import checked_name
from ember.control.validation import invalid_spec
from ember.errors import InvalidSpec, LayerNotFound
from ember.model.layer import Layer, LayerRef, LayerVersion
from ember.store.layers import SqlLayerStore

# The directory of a layer that goes on the import path, when the layer has one (the
# layout of AWS Lambda's Python layers); otherwise the layer's root goes there.
PYTHON_DIR = "python"


class LayerService:
    """Every rule of layers. Thread-safe: it holds no state beyond the stores.

    Args:
        store: layer rows and versions.
        artifacts: where layer zips are kept (shared with function code).
        code_in_use: whether anything (function, version, layer version) still references
            an artifact, so that a deleted version's zip goes only when nothing does.
    """

    def __init__(
        self, store: SqlLayerStore, artifacts: ArtifactStore, code_in_use: Callable[[str], bool]
    ) -> None:
        self._store = store
        self._artifacts = artifacts
        self._code_in_use = code_in_use

    def publish(self, name: str, code_zip: bytes, description: str = "") -> tuple[
        LayerVersion, bool
    ]:
        """Publish a zip as the layer's next version; returns (version, created). The same
        content as the newest version returns that version with ``created`` False.

        Raises InvalidSpec (bad name or description), InvalidCode, PayloadTooLarge."""
        checked_name("layer", name)
        if len(description) > 256:
            raise InvalidSpec(
                "description is longer than 256 characters", {"field": "description"}
            )
        code = self._artifacts.put(code_zip)
        try:
            return self._store.publish(name, code, description)
        except Exception:
            self._collect(code.sha256)
            raise

    def list_layers(self) -> list[Layer]:
        return self._store.list_layers()

    def list_versions(self, name: str) -> list[LayerVersion]:
        return self._store.list_versions(name)

    def get_version(self, name: str, number: int) -> LayerVersion:
        return self._store.get_version(name, number)

    def delete_version(self, name: str, number: int) -> LayerVersion:
        """Delete one version; ``Conflict`` while a function's ``latest`` or any of its
        versions lists it."""
        deleted = self._store.delete_version(name, number)
        self._collect(deleted.code.sha256)
        return deleted

    def _collect(self, sha256: str) -> None:
        if not self._code_in_use(sha256):
            self._artifacts.delete(sha256)

    # what functions use ------------------------------------------------------------------

    def pin(self, entries: Sequence[str], field: str = "config.layers") -> list[str]:
        """``entries`` with every bare ``name`` replaced by ``name:N``, N the newest version
        now; a pinned entry is checked to exist.

        Raises InvalidSpec naming ``config.layers[i]`` for each unknown layer or version,
        or a layer listed twice."""
        return [version.ref() for version in self._resolve(entries, field)]

    def dirs(self, entries: Sequence[str]) -> tuple[Path, ...]:
        """The directories to put on an instance's import path, in the listed order: each
        layer version's ``python/`` directory, or its root when it has none.

        Raises InvalidSpec (as ``pin``) when a layer version does not exist."""
        found: list[Path] = []
        for version in self._resolve(entries, "config.layers"):
            root = self._artifacts.path(version.code.sha256)
            python = root / PYTHON_DIR
            found.append(python if python.is_dir() else root)
        return tuple(found)

    def _resolve(self, entries: Sequence[str], field: str) -> list[LayerVersion]:
        resolved: list[LayerVersion] = []
        errors: list[dict[str, str]] = []
        seen: set[str] = set()
        for i, entry in enumerate(entries):
            ref = LayerRef.parse(entry)
            where = f"{field}[{i}]"
            if ref.name in seen:
                errors.append({"field": where, "message": f"layer {ref.name!r} is listed twice"})
                continue
            seen.add(ref.name)
            try:
                resolved.append(
                    self._store.newest(ref.name) if ref.version is None
                    else self._store.get_version(ref.name, ref.version)
                )
            except LayerNotFound as exc:
                errors.append({"field": where, "message": exc.message})
        if errors:
            raise invalid_spec(errors)
        return resolved
