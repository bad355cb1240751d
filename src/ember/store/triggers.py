"""Triggers in the metadata store (the same database as functions)."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from pydantic import TypeAdapter
from sqlalchemy.engine import Engine

from ember.errors import Conflict, TriggerNotFound
from ember.model.trigger import SourceSpec, Trigger
from ember.store.schema import triggers
from ember.store.sql import write_transaction

_SOURCE: TypeAdapter[Any] = TypeAdapter(SourceSpec)


class SqlTriggerStore:
    """Trigger rows; the function's deletion removes its triggers (foreign key cascade,
    and explicitly for SQLite connections that did not turn foreign keys on). A trigger
    that targets the event bus has no function (NULL), so no function's deletion takes it."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    def create(self, trigger: Trigger) -> Trigger:
        with write_transaction(self._engine) as conn:
            if conn.execute(sa.select(triggers.c.name).where(
                triggers.c.name == trigger.name)).first():
                raise Conflict(f"trigger {trigger.name!r} already exists",
                               {"trigger": trigger.name})
            conn.execute(triggers.insert().values(**_row(trigger)))
        return trigger

    def get(self, name: str) -> Trigger:
        with self._engine.connect() as conn:
            query = sa.select(triggers).where(triggers.c.name == name)
            row = conn.execute(query).mappings().first()
        if row is None:
            raise TriggerNotFound(f"trigger {name!r} does not exist", {"trigger": name})
        return _trigger(row)

    def list(self, *, function: str | None = None, kind: str | None = None,
             workflow: str | None = None) -> list[Trigger]:
        query = sa.select(triggers).order_by(triggers.c.name)
        if function is not None:
            query = query.where(triggers.c.function == function)
        if workflow is not None:
            query = query.where(triggers.c.workflow == workflow)
        if kind is not None:
            query = query.where(triggers.c.kind == kind)
        with self._engine.connect() as conn:
            return [_trigger(r) for r in conn.execute(query).mappings()]

    def replace(self, trigger: Trigger) -> Trigger:
        with write_transaction(self._engine) as conn:
            result = conn.execute(
                triggers.update().where(triggers.c.name == trigger.name).values(**_row(trigger))
            )
        if result.rowcount == 0:
            raise TriggerNotFound(f"trigger {trigger.name!r} does not exist",
                                  {"trigger": trigger.name})
        return trigger

    def delete(self, name: str) -> Trigger:
        found = self.get(name)
        with write_transaction(self._engine) as conn:
            conn.execute(triggers.delete().where(triggers.c.name == name))
        return found

    def delete_function(self, function: str) -> None:
        with write_transaction(self._engine) as conn:
            conn.execute(triggers.delete().where(triggers.c.function == function))


def _row(t: Trigger) -> dict[str, Any]:
    return {
        "name": t.name, "target": t.target, "function": t.function, "qualifier": t.qualifier,
        "workflow": t.workflow,
        "kind": t.source.kind, "source": t.source.model_dump(mode="json"),
        "state": t.state, "description": t.description,
        "created_at": t.created_at, "updated_at": t.updated_at,
    }


def _trigger(row: Any) -> Trigger:
    return Trigger(
        name=row["name"], function=row["function"], qualifier=row["qualifier"],
        source=_SOURCE.validate_python(row["source"]), state=row["state"],
        description=row["description"], created_at=row["created_at"],
        updated_at=row["updated_at"], target=row["target"], workflow=row["workflow"],
    )
