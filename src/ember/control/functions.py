"""The lifecycle of functions: create, read, update, delete, disable, publish and alias."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Protocol

from pydantic import ValidationError

from ember.artifacts import ArtifactStore
from ember.clock import Clock, utcnow
from ember.cluster.changes import FUNCTION, FUNCTION_DELETED, ChangeBus
from ember.control.validation import from_validation_error, invalid_spec
from ember.errors import Conflict, FunctionNotFound, InvalidSpec
from ember.model.function import (
    RESERVED_ALIASES,
    Alias,
    AsyncConfig,
    CodeRef,
    Function,
    FunctionConfig,
    Qualifier,
    Version,
    check_name,
)
from ember.store.base import MetadataStore, Page

log = logging.getLogger(__name__)


def parse_config(data: dict[str, Any] | None) -> FunctionConfig:
    try:
        return FunctionConfig.model_validate(data or {})
    except ValidationError as exc:
        raise from_validation_error(exc, "config") from exc


def checked_name(kind: str, value: str, field: str = "name") -> str:
    try:
        return check_name(kind, value)
    except ValueError as exc:
        raise invalid_spec([{"field": field, "message": str(exc)}]) from exc


class LayerPinner(Protocol):
    """What functions need of layers (``LayerService``)."""

    def pin(self, entries: Sequence[str], field: str = "config.layers") -> list[str]:
        """Every entry as ``name:N``; InvalidSpec naming ``config.layers[i]`` when a layer
        or version does not exist."""
        ...


class SecretChecker(Protocol):
    """What functions need of secrets (``SecretService``)."""

    def missing(self, names: Sequence[str]) -> list[str]:
        """Those of ``names`` that are not stored, in order."""
        ...


class DependencyBuilder(Protocol):
    """What functions need of dependency builds (``BuildService``)."""

    def ensure(self, code_dir: Path, function: str | None) -> Path | None:
        """The dependency directory of the code unpacked in ``code_dir``, built first
        (and recorded against ``function``) when missing; None when the code holds no
        requirements.txt. Raises BuildFailed."""
        ...


class FunctionService:
    """Every lifecycle rule of functions, versions and aliases. Thread-safe: it holds no
    state of its own beyond the stores, which are.

    With ``layers``, the layers a config lists are pinned to exact versions whenever
    ``latest`` is saved or published (a bare name: the newest version at that time). With
    ``builds``, code holding a requirements.txt gets its dependencies built before it is
    saved as ``latest``; a failed build saves nothing. With ``secrets``, every secret a
    config lists must exist when it is saved.

    With ``changes``, every change is announced to the other nodes, and theirs reach this
    node's listeners as if made here (``changed_elsewhere``, ``deleted_elsewhere``)."""

    def __init__(
        self, store: MetadataStore, artifacts: ArtifactStore, clock: Clock,
        layers: LayerPinner | None = None, builds: DependencyBuilder | None = None,
        secrets: SecretChecker | None = None, changes: ChangeBus | None = None,
    ) -> None:
        self._store = store
        self._artifacts = artifacts
        self._clock = clock
        self._layers = layers
        self._builds = builds
        self._secrets = secrets
        self._changes = changes
        self._listeners: list[Callable[[str], None]] = []
        self._delete_listeners: list[tuple[Callable[[str], None], bool]] = []
        self._target_guards: list[Callable[[str, Qualifier], None]] = []
        # The functions this node may hold something of (what it read or was told of):
        # after missed changes, those no longer stored are taken as deleted.
        self._known: set[str] = set()
        self._known_lock = threading.Lock()
        if changes is not None:
            changes.follow(FUNCTION, self.changed_elsewhere)
            changes.follow(FUNCTION_DELETED, self.deleted_elsewhere)
            changes.on_resync(self.resync)

    def on_change(self, listener: Callable[[str], None]) -> None:
        """Call ``listener(function_name)`` after every change to a function, its versions
        or aliases (from whichever thread made the change), made here or on another node."""
        self._listeners.append(listener)

    def on_delete(self, listener: Callable[[str], None], *, each_node: bool = False) -> None:
        """Call ``listener(function_name)`` after a function is deleted, so that what is
        kept about it elsewhere (logs, statistics) goes with it. Called on the node that
        deleted it; with ``each_node``, on every node (what it removes is the node's own)."""
        self._delete_listeners.append((listener, each_node))

    def guard_targets(self, guard: Callable[[str, Qualifier], None]) -> None:
        """Call ``guard(function_name, qualifier)`` before a version or an alias is
        deleted; the guard raises Conflict to refuse (a trigger targets it)."""
        self._target_guards.append(guard)

    def _check_unused(self, name: str, qualifier: Qualifier) -> None:
        for guard in self._target_guards:
            guard(name, qualifier)

    def _changed(self, name: str) -> None:
        self._notify(name)
        if self._changes is not None:
            self._changes.publish(FUNCTION, name)

    def _notify(self, name: str) -> None:
        self._remember(name)
        for listener in self._listeners:
            listener(name)

    def _remember(self, name: str) -> None:
        with self._known_lock:
            self._known.add(name)

    # changes made on other nodes ---------------------------------------------------------

    def changed_elsewhere(self, name: str) -> None:
        """Another node changed the function: tell this node's listeners."""
        self._notify(name)

    def deleted_elsewhere(self, name: str) -> None:
        """Another node deleted the function: what a deletion here does to this node (its
        ``each_node`` delete listeners, then its change listeners)."""
        with self._known_lock:
            self._known.discard(name)
        for listener, each_node in self._delete_listeners:
            if each_node:
                listener(name)
        for listener in self._listeners:
            listener(name)

    def resync(self) -> None:
        """Changes may have been missed: every stored function is taken as changed, and
        every one this node knew of that is no longer stored as deleted."""
        stored = {f.name for f in self._all()}
        with self._known_lock:
            gone = self._known - stored
        for name in sorted(gone):
            self.deleted_elsewhere(name)
        for name in sorted(stored):
            self._notify(name)

    # functions ---------------------------------------------------------------------------

    def create(self, name: str, config: dict[str, Any] | None, code_zip: bytes) -> Function:
        """Create a function from a config and a zip of its code.

        Raises InvalidSpec (bad name or field), InvalidCode (unsafe archive), PayloadTooLarge,
        Conflict (name taken), BuildFailed (its requirements.txt could not be installed).
        Nothing is stored when any of them is raised."""
        checked_name("function", name)
        parsed = self._pinned(parse_config(config))
        self._check_secrets(parsed)
        self._ensure_absent(name)
        code = self._artifacts.put(code_zip)
        try:
            self._build(name, code)
            now = utcnow(self._clock)
            created = self._store.create_function(Function(name, parsed, code, True, now, now))
        except Exception:
            self._collect(code.sha256)
            raise
        self._changed(name)
        return created

    def _pinned(self, config: FunctionConfig) -> FunctionConfig:
        if self._layers is None or not config.layers:
            return config
        pinned = self._layers.pin(config.layers)
        return config if pinned == config.layers else config.model_copy(update={"layers": pinned})

    def _check_secrets(self, config: FunctionConfig) -> None:
        listed = {"secrets": config.secrets, "secret_files": config.secret_files}
        if self._secrets is None or not any(listed.values()):
            return
        missing = set(self._secrets.missing([*config.secrets, *config.secret_files]))
        if missing:
            raise invalid_spec([
                {"field": f"config.{field}[{i}]",
                 "message": f"secret {name!r} does not exist: set it first "
                            f"(`ember secret set {name}`)"}
                for field, names in listed.items()
                for i, name in enumerate(names) if name in missing
            ])

    def _ensure_absent(self, name: str) -> None:
        try:
            self._store.get_function(name)
        except FunctionNotFound:
            return
        raise Conflict(
            f"function {name!r} already exists: update it, or delete it first", {"function": name}
        )

    def get(self, name: str) -> Function:
        found = self._store.get_function(name)
        self._remember(name)
        return found

    def list_functions(
        self, *, prefix: str = "", tag: str | None = None, limit: int = 100,
        cursor: str | None = None,
    ) -> Page[Function]:
        """List functions by name; ``tag`` is ``key`` or ``key=value``."""
        if not 1 <= limit <= 1000:
            raise InvalidSpec("limit must be between 1 and 1000", {"field": "limit"})
        parsed_tag = None
        if tag:
            key, sep, value = tag.partition("=")
            parsed_tag = (key, value if sep else None)
        return self._store.list_functions(
            prefix=prefix, tag=parsed_tag, limit=limit, cursor=cursor
        )

    def all_functions(self) -> list[Function]:
        """Every function, page after page."""
        found = self._all()
        with self._known_lock:
            self._known.update(f.name for f in found)
        return found

    def _all(self) -> list[Function]:
        found: list[Function] = []
        cursor = None
        while True:
            page = self._store.list_functions(limit=1000, cursor=cursor)
            found.extend(page.items)
            if page.next_cursor is None:
                return found
            cursor = page.next_cursor

    def update_config(self, name: str, patch: dict[str, Any]) -> Function:
        """Merge ``patch`` into the top-level fields of ``latest``'s config."""
        current = self._store.get_function(name)
        try:
            config = current.config.merged(patch)
        except ValidationError as exc:
            raise from_validation_error(exc, "config") from exc
        config = self._pinned(config)
        self._check_secrets(config)
        updated = self._store.update_function(name, config=config)
        self._changed(name)
        return updated

    def update_code(self, name: str, code_zip: bytes) -> Function:
        """Replace the code of ``latest``. Raises as ``create`` does; ``latest`` keeps its
        code when any error is raised."""
        current = self._store.get_function(name)
        code = self._artifacts.put(code_zip)
        try:
            self._build(name, code)
            updated = self._store.update_function(name, code=code)
        except Exception:
            self._collect(code.sha256)
            raise
        self._collect(current.code.sha256)
        self._changed(name)
        return updated

    def set_async_paused(self, name: str, paused: bool) -> Function:
        """Pause or resume the processing of the function's async events; paused events
        stay queued."""
        updated = self._store.update_function(name, async_paused=paused)
        self._changed(name)
        return updated

    def set_enabled(self, name: str, enabled: bool) -> Function:
        updated = self._store.update_function(name, enabled=enabled)
        self._changed(name)
        return updated

    def delete(self, name: str) -> Function:
        """Delete the function with all its versions and aliases."""
        codes = {v.code.sha256 for v in self._store.list_versions(name)}
        deleted = self._store.delete_function(name)
        for sha256 in codes | {deleted.code.sha256}:
            self._collect(sha256)
        with self._known_lock:
            self._known.discard(name)
        for listener, _ in self._delete_listeners:
            listener(name)
        for listener in self._listeners:
            listener(name)
        if self._changes is not None:
            self._changes.publish(FUNCTION_DELETED, name)
        return deleted

    def _collect(self, sha256: str) -> None:
        """Remove an artifact nothing references any more."""
        if not self._store.code_in_use(sha256):
            self._artifacts.delete(sha256)

    def code_path(self, code: CodeRef) -> str:
        return str(self._artifacts.path(code.sha256))

    def code_zip(self, code: CodeRef) -> bytes:
        return self._artifacts.read(code.sha256)

    def dependency_dirs(self, code: CodeRef, function: str) -> tuple[Path, ...]:
        """The dependency directory of ``code`` (empty when it needs none), built first
        when missing (the server's Python changed). Blocks; raises BuildFailed."""
        found = self._build(function, code)
        return () if found is None else (found,)

    def _build(self, function: str, code: CodeRef) -> Path | None:
        if self._builds is None:
            return None
        return self._builds.ensure(Path(self.code_path(code)), function)

    # versions ----------------------------------------------------------------------------

    def publish(self, name: str, description: str = "") -> tuple[Version, bool]:
        """Snapshot ``latest``; returns (version, created). An unchanged ``latest`` returns
        the newest existing version with ``created`` False."""
        if len(description) > 256:
            raise InvalidSpec(
                "description is longer than 256 characters", {"field": "description"}
            )
        if self._layers is not None:
            # A latest saved before its layers were pinned gets them pinned now.
            current = self._store.get_function(name)
            pinned = self._pinned(current.config)
            if pinned is not current.config:
                self._store.update_function(name, config=pinned)
        published = self._store.publish_version(name, description)
        if published[1]:
            self._changed(name)
        return published

    def get_version(self, name: str, number: int) -> Version:
        return self._store.get_version(name, number)

    def list_versions(self, name: str) -> list[Version]:
        return self._store.list_versions(name)

    def delete_version(self, name: str, number: int) -> Version:
        """Raises Conflict while an alias holds the version or a trigger targets it."""
        self._check_unused(name, Qualifier("version", str(number), number))
        deleted = self._store.delete_version(name, number)
        self._collect(deleted.code.sha256)
        self._changed(name)
        return deleted

    # aliases -----------------------------------------------------------------------------

    def set_alias(
        self, name: str, alias: str, *, version: int, additional_version: int | None = None,
        weight: float | None = None, description: str = "",
        async_config: AsyncConfig | None = None,
    ) -> tuple[Alias, bool]:
        """Point ``alias`` at ``version``; with ``additional_version`` and ``weight``
        (0 < weight < 1) that share of traffic goes to the additional version. An
        ``async_config`` overrides the versions' async settings for events sent to the
        alias."""
        checked_name("alias", alias, "alias")
        errors = []
        if alias in RESERVED_ALIASES:
            errors.append({"field": "alias", "message": f"{alias!r} is reserved"})
        if version < 1:
            errors.append({"field": "version", "message": "versions start at 1"})
        if (additional_version is None) != (weight is None):
            errors.append({
                "field": "weight" if weight is None else "additional_version",
                "message": "additional_version and weight go together",
            })
        if weight is not None and not 0 < weight < 1:
            errors.append({"field": "weight", "message": "weight must be between 0 and 1"})
        if additional_version is not None and additional_version == version:
            errors.append({
                "field": "additional_version", "message": "must differ from version",
            })
        if len(description) > 256:
            errors.append({"field": "description", "message": "longer than 256 characters"})
        if errors:
            raise invalid_spec(errors)
        result = self._store.put_alias(
            name, alias, version=version, additional_version=additional_version,
            weight=weight, description=description, async_config=async_config,
        )
        self._changed(name)
        return result

    def get_alias(self, name: str, alias: str) -> Alias:
        return self._store.get_alias(name, alias)

    def list_aliases(self, name: str) -> list[Alias]:
        return self._store.list_aliases(name)

    def delete_alias(self, name: str, alias: str) -> Alias:
        """Raises Conflict while a trigger targets the alias."""
        self._check_unused(name, Qualifier("alias", alias))
        deleted = self._store.delete_alias(name, alias)
        self._changed(name)
        return deleted
