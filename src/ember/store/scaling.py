"""Provisioned capacity policies in the metadata store."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from ember.errors import ProvisionedNotFound
from ember.model.scaling import Provisioned, ProvisionedConfig
from ember.store.schema import provisioned
from ember.store.sql import write_transaction


class SqlProvisionedStore:
    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    def put(self, entry: Provisioned) -> None:
        """Create or replace the policy of ``entry``'s function and qualifier."""
        values = _values(entry)
        where = _where(entry.function, entry.qualifier)
        with write_transaction(self._engine) as conn:
            if conn.execute(sa.select(provisioned.c.function).where(where)).first():
                conn.execute(provisioned.update().where(where).values(values))
            else:
                conn.execute(provisioned.insert().values(
                    function=entry.function, qualifier=entry.qualifier, **values))

    def advance(self, function: str, qualifier: str, *, target: int, applied_until: float,
                last_action: str | None) -> bool:
        """Record scheduled actions applied through ``applied_until``; False when the
        policy is gone."""
        with write_transaction(self._engine) as conn:
            result = conn.execute(provisioned.update().where(_where(function, qualifier))
                                  .values(target=target, applied_until=applied_until,
                                          last_action=last_action))
        return bool(result.rowcount)

    def get(self, function: str, qualifier: str) -> Provisioned:
        with self._engine.connect() as conn:
            row = conn.execute(sa.select(provisioned).where(_where(function, qualifier))
                               ).mappings().first()
        if row is None:
            raise ProvisionedNotFound(
                f"{function!r} has no provisioned capacity at {qualifier!r}: set it with "
                f"`ember scale set {function} -q {qualifier} --target N`",
                {"function": function, "qualifier": qualifier})
        return _entry(row)

    def all(self, function: str | None = None) -> list[Provisioned]:
        query = sa.select(provisioned).order_by(provisioned.c.function,
                                                provisioned.c.qualifier)
        if function is not None:
            query = query.where(provisioned.c.function == function)
        with self._engine.connect() as conn:
            return [_entry(r) for r in conn.execute(query).mappings()]

    def delete(self, function: str, qualifier: str) -> Provisioned:
        found = self.get(function, qualifier)
        with write_transaction(self._engine) as conn:
            conn.execute(provisioned.delete().where(_where(function, qualifier)))
        return found


def _where(function: str, qualifier: str) -> Any:
    return sa.and_(provisioned.c.function == function, provisioned.c.qualifier == qualifier)


def _values(entry: Provisioned) -> dict[str, Any]:
    return {"config": entry.config.model_dump(mode="json"), "target": entry.target,
            "applied_until": entry.applied_until, "last_action": entry.last_action,
            "updated_at": entry.updated_at}


def _entry(row: Any) -> Provisioned:
    return Provisioned(function=row["function"], qualifier=row["qualifier"],
                       config=ProvisionedConfig.model_validate(row["config"]),
                       target=row["target"], applied_until=row["applied_until"],
                       updated_at=row["updated_at"], last_action=row["last_action"])
