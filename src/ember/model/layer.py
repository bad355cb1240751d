"""Layers: named, versioned artifacts placed on an instance's import path.

A function lists layers as ``name`` or ``name:version``; a bare name is pinned to the newest
version when the function is created, updated or published, so that ``latest`` and every
published version keep running the exact layer versions they were given.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from ember.model.function import CodeRef


@dataclass(frozen=True)
class LayerRef:
    """One entry of ``FunctionConfig.layers``: a name and, when pinned, a version."""

    name: str
    version: int | None = None

    @classmethod
    def parse(cls, text: str) -> LayerRef:
        """Parse ``name`` or ``name:version`` (already checked by ``FunctionConfig``)."""
        name, _, number = text.partition(":")
        return cls(name, int(number) if number else None)

    def __str__(self) -> str:
        return self.name if self.version is None else f"{self.name}:{self.version}"


@dataclass(frozen=True)
class Layer:
    """A layer name; ``latest_version`` is its newest existing version (None when every
    version was deleted; numbers are never reused)."""

    name: str
    latest_version: int | None
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True)
class LayerVersion:
    """One immutable version of a layer: a zip artifact."""

    layer: str
    number: int
    code: CodeRef
    description: str
    created_at: datetime

    def ref(self) -> str:
        return f"{self.layer}:{self.number}"
