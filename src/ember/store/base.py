"""The MetadataStore interface: what the control plane needs from persistence."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Generic, Protocol, TypeVar

from ember.model.function import (
    Alias,
    AsyncConfig,
    CodeRef,
    Function,
    FunctionConfig,
    Version,
)

T = TypeVar("T")


@dataclass(frozen=True)
class Page(Generic[T]):
    """One page of a listing; ``next_cursor`` is None on the last page."""

    items: list[T]
    next_cursor: str | None


class MetadataStore(Protocol):
    """Functions, versions and aliases. Every method is atomic.

    Raises ``FunctionNotFound``, ``VersionNotFound``, ``AliasNotFound`` for missing
    resources and ``Conflict`` when a rule between resources forbids the change.
    """

    def create_function(self, function: Function) -> Function:
        """Store a new function; ``Conflict`` if the name is taken."""
        ...

    def get_function(self, name: str) -> Function: ...

    def list_functions(
        self, *, prefix: str = "", tag: tuple[str, str | None] | None = None,
        limit: int = 100, cursor: str | None = None,
    ) -> Page[Function]:
        """Functions sorted by name; ``tag`` is (key, value) or (key, None) for any value."""
        ...

    def update_function(
        self, name: str, *, config: FunctionConfig | None = None, code: CodeRef | None = None,
        enabled: bool | None = None, async_paused: bool | None = None,
    ) -> Function: ...

    def delete_function(self, name: str) -> Function:
        """Delete a function with all its versions and aliases; return what was deleted."""
        ...

    def publish_version(self, name: str, description: str) -> tuple[Version, bool]:
        """Snapshot ``latest`` as the next version; when the newest version already holds the
        same code and config, return it with ``False`` instead of a duplicate."""
        ...

    def get_version(self, name: str, number: int) -> Version: ...

    def list_versions(self, name: str) -> list[Version]: ...

    def delete_version(self, name: str, number: int) -> Version:
        """Delete one version; ``Conflict`` if an alias points at it."""
        ...

    def put_alias(
        self, name: str, alias: str, *, version: int, additional_version: int | None,
        weight: float | None, description: str, async_config: AsyncConfig | None = None,
    ) -> tuple[Alias, bool]:
        """Create or update an alias; the versions must exist. Returns (alias, created)."""
        ...

    def get_alias(self, name: str, alias: str) -> Alias: ...

    def list_aliases(self, name: str) -> list[Alias]: ...

    def delete_alias(self, name: str, alias: str) -> Alias: ...

    def code_in_use(self, sha256: str) -> bool:
        """Whether any function, version or layer version still references this artifact."""
        ...

    def close(self) -> None: ...
