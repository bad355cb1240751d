"""The lifecycle of triggers: create, read, update, delete, pause and resume."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any, Protocol

from pydantic import ValidationError

from ember.clock import Clock
from ember.cluster.changes import TRIGGER, ChangeBus
from ember.control.functions import FunctionService, checked_name
from ember.control.validation import field_errors, invalid_spec
from ember.errors import Conflict, InvalidSpec
from ember.model.function import Qualifier
from ember.model.trigger import TRIGGER_STATES, Trigger, TriggerSpec
from ember.store.triggers import SqlTriggerStore

log = logging.getLogger(__name__)


def _errors(exc: ValidationError) -> InvalidSpec:
    return invalid_spec(field_errors(exc.errors()))


class Workflows(Protocol):
    """What triggers need of the workflow service (``WorkflowService``)."""

    def get(self, name: str) -> Any:
        """The workflow; raises WorkflowNotFound."""
        ...

    def guard_delete(self, guard: Callable[[str], None]) -> None: ...


class TriggerService:
    """Trigger rules: a trigger's function and qualifier must exist (target ``function``),
    or its workflow (target ``workflow``), and a targeted workflow is not deleted unless
    forced; its target never changes, an HTTP path belongs to one trigger, and every change
    reaches the listeners (the supervisor). Without ``workflows``, target ``workflow`` is
    refused.

    With ``changes``, every change is announced to the other nodes, and theirs reach this
    node's listeners as if made here (``changed_elsewhere``; a function deleted on another
    node reaches ``on_function_deleted``'s listeners through ``functions``)."""

    def __init__(self, store: SqlTriggerStore, functions: FunctionService, clock: Clock,
                 workflows: Workflows | None = None, changes: ChangeBus | None = None) -> None:
        self._store = store
        self._functions = functions
        self._clock = clock
        self._workflows = workflows
        self._changes = changes
        if workflows is not None:
            workflows.guard_delete(self._refuse_workflow_targeted)
        self._listeners: list[Callable[[str], None]] = []
        self._deleted_listeners: list[Callable[[str], None]] = []
        # The triggers this node may run (what it read or was told of): after missed
        # changes, those no longer stored are taken as deleted.
        self._known: set[str] = set()
        self._known_lock = threading.Lock()
        # The node that deletes a function removes its triggers; every node stops them.
        functions.on_delete(self._store.delete_function)
        functions.on_delete(self._function_deleted, each_node=True)
        functions.guard_targets(self._refuse_targeted)
        if changes is not None:
            changes.follow(TRIGGER, self.changed_elsewhere)
            changes.on_resync(self.resync)

    def on_change(self, listener: Callable[[str], None]) -> None:
        """Call ``listener(trigger_name)`` after every change (from any thread), made here
        or on another node."""
        self._listeners.append(listener)

    def on_function_deleted(self, listener: Callable[[str], None]) -> None:
        """Call ``listener(function_name)`` once a deleted function's triggers are gone
        (from the deleting thread, before the deletion returns; on the other nodes, once
        they hear of it). The store removes them with the function's row, so no change of
        each trigger is announced."""
        self._deleted_listeners.append(listener)

    def _changed(self, name: str) -> None:
        self._notify(name)
        if self._changes is not None:
            self._changes.publish(TRIGGER, name)

    def _notify(self, name: str) -> None:
        self._remember([name])
        for listener in self._listeners:
            listener(name)

    def _remember(self, names: list[str]) -> None:
        with self._known_lock:
            self._known.update(names)

    def _function_deleted(self, function: str) -> None:
        for listener in self._deleted_listeners:
            listener(function)

    def changed_elsewhere(self, name: str) -> None:
        """Another node changed (or created, or deleted) the trigger: tell the listeners."""
        self._notify(name)

    def resync(self) -> None:
        """Changes may have been missed: every trigger stored, and every one this node knew
        of, is taken as changed (the listeners find the deleted ones gone)."""
        stored = {t.name for t in self._store.list()}
        with self._known_lock:
            names, self._known = self._known | stored, stored
        for name in sorted(names):
            for listener in self._listeners:
                listener(name)

    def _refuse_targeted(self, function: str, qualifier: Qualifier) -> None:
        """Raise Conflict when triggers target ``qualifier`` (a version or an alias) of
        ``function``, naming them: deleting it would leave them pointing at nothing."""
        holders = [t.name for t in self._store.list(function=function)
                   if _same_target(t.qualifier, qualifier)]
        if holders:
            what = (f"version {qualifier.version}" if qualifier.kind == "version"
                    else f"alias {qualifier.value!r}")
            raise Conflict(
                f"{what} of {function!r} is the target of trigger(s) {', '.join(holders)}: "
                "point them at another qualifier or delete them first",
                {"function": function, "qualifier": qualifier.value, "triggers": holders},
            )

    def _refuse_workflow_targeted(self, workflow: str) -> None:
        """Raise Conflict when triggers start ``workflow``, naming them."""
        holders = [t.name for t in self._store.list(workflow=workflow)]
        if holders:
            raise Conflict(
                f"workflow {workflow!r} is the target of trigger(s) {', '.join(holders)}: "
                "delete them first, or delete the workflow with force (their events then fail)",
                {"workflow": workflow, "triggers": holders},
            )

    def create(self, name: str, spec: dict[str, Any]) -> Trigger:
        """Create a trigger from ``{"target", "function", "qualifier", "workflow", "source",
        "description"}`` (target ``events``: no function or qualifier; target ``workflow``:
        ``workflow`` only). Raises InvalidSpec, FunctionNotFound / VersionNotFound /
        AliasNotFound, WorkflowNotFound, Conflict."""
        checked_name("trigger", name)
        parsed = self._parse(spec)
        self._check_path(name, parsed.source)
        now = self._clock.time()
        trigger = Trigger(name, parsed.function, parsed.qualifier, parsed.source, "enabled",
                          parsed.description, now, now, parsed.target, parsed.workflow)
        created = self._store.create(trigger)
        self._changed(name)
        return created

    def _parse(self, spec: dict[str, Any]) -> TriggerSpec:
        """The checked spec, its function and qualifier found (target ``function``) or its
        workflow (target ``workflow``)."""
        try:
            parsed = TriggerSpec.model_validate(spec)
        except ValidationError as exc:
            raise _errors(exc) from exc
        if parsed.target == "function":
            assert parsed.function is not None and parsed.qualifier is not None  # validated
            self._check_target(parsed.function, parsed.qualifier)
        elif parsed.target == "workflow":
            assert parsed.workflow is not None  # validated
            if self._workflows is None:
                raise invalid_spec([{"field": "target",
                                     "message": "this server runs no workflows"}])
            self._workflows.get(parsed.workflow)
        return parsed

    def _check_target(self, function: str, qualifier: str) -> None:
        try:
            parsed = Qualifier.parse(qualifier)
        except ValueError as exc:
            raise InvalidSpec(str(exc), {"field": "qualifier"}) from exc
        self._functions.get(function)
        if parsed.kind == "version":
            assert parsed.version is not None
            self._functions.get_version(function, parsed.version)
        elif parsed.kind == "alias":
            self._functions.get_alias(function, parsed.value)

    def _check_path(self, name: str, source: Any) -> None:
        if source.kind != "http":
            return
        for other in self._store.list(kind="http"):
            if other.name != name and other.source.path == source.path:  # type: ignore[union-attr]
                raise Conflict(
                    f"HTTP path {source.path} is served by trigger {other.name!r}",
                    {"field": "source.path", "trigger": other.name},
                )

    def get(self, name: str) -> Trigger:
        found = self._store.get(name)
        self._remember([name])
        return found

    def list(self, *, function: str | None = None) -> list[Trigger]:
        if function is not None:
            self._functions.get(function)
        found = self._store.list(function=function)
        self._remember([t.name for t in found])
        return found

    def update(self, name: str, patch: dict[str, Any]) -> Trigger:
        """Change ``qualifier``, ``source`` (replaced whole), ``description``, ``function``
        or ``workflow`` (as the target allows). The target stays: InvalidSpec naming
        ``target`` when the patch gives another."""
        current = self._store.get(name)
        patch = dict(patch)
        target = patch.pop("target", None)
        if target is not None and target != current.target:
            raise invalid_spec([{
                "field": "target",
                "message": f"cannot change from {current.target!r}: delete the trigger and "
                           "create it again",
            }])
        bound: dict[str, Any] = (
            {"function": current.function, "qualifier": current.qualifier}
            if current.target == "function"
            else {"workflow": current.workflow} if current.target == "workflow" else {})
        merged = {
            "target": current.target, **bound,
            "source": current.source.model_dump(mode="json"),
            "description": current.description, **patch,
        }
        parsed = self._parse(merged)
        self._check_path(name, parsed.source)
        updated = Trigger(name, parsed.function, parsed.qualifier, parsed.source, current.state,
                          parsed.description, current.created_at, self._clock.time(),
                          current.target, parsed.workflow)
        self._store.replace(updated)
        self._changed(name)
        return updated

    def set_state(self, name: str, state: str) -> Trigger:
        """``enabled``, ``disabled`` (the source is stopped) or ``paused`` (the source keeps
        its events until resumed)."""
        if state not in TRIGGER_STATES:
            raise InvalidSpec(f"state must be one of {', '.join(TRIGGER_STATES)}",
                              {"field": "state"})
        current = self._store.get(name)
        updated = Trigger(current.name, current.function, current.qualifier, current.source,
                          state, current.description, current.created_at, self._clock.time(),
                          current.target, current.workflow)
        self._store.replace(updated)
        self._changed(name)
        return updated

    def delete(self, name: str) -> Trigger:
        deleted = self._store.delete(name)
        self._changed(name)
        return deleted



def _same_target(text: str | None, qualifier: Qualifier) -> bool:
    if text is None:
        return False
    try:
        parsed = Qualifier.parse(text)
    except ValueError:
        return False
    return parsed.kind == qualifier.kind and (
        parsed.version == qualifier.version if parsed.kind == "version"
        else parsed.value == qualifier.value
    )
