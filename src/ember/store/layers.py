"""Layers and their versions in the metadata store (the same database as functions)."""

from __future__ import annotations

from contextlib import AbstractContextManager
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from ember.clock import Clock, SystemClock, utcnow
from ember.errors import Conflict, LayerNotFound
from ember.model.function import CodeRef
from ember.model.layer import Layer, LayerVersion
from ember.store.schema import functions, layer_versions, layers, versions
from ember.store.sql import _utc, write_transaction


class SqlLayerStore:
    """Layer rows and their immutable versions. Every method is atomic.

    Raises ``LayerNotFound`` for a missing layer or version, and ``Conflict`` when a
    function's ``latest`` or one of its versions still uses a version being deleted.
    """

    def __init__(self, engine: Engine, clock: Clock | None = None) -> None:
        self._engine = engine
        self._clock = clock or SystemClock()

    def _tx(self) -> AbstractContextManager[Connection]:
        # Read-then-write (publish, delete) takes SQLite's write lock at BEGIN.
        return write_transaction(self._engine)

    def publish(self, name: str, code: CodeRef, description: str) -> tuple[LayerVersion, bool]:
        """Store ``code`` as the layer's next version (making the layer if new); when the
        newest version holds the same code, return it with ``False`` instead."""
        now = utcnow(self._clock)
        with self._tx() as conn:
            row = conn.execute(
                sa.select(layers).where(layers.c.name == name).with_for_update()
            ).mappings().first()
            if row is None:
                conn.execute(layers.insert().values(
                    name=name, last_version=0, created_at=now, updated_at=now
                ))
                last = 0
            else:
                last = row["last_version"]
                newest = self._newest(conn, name)
                if newest is not None and newest.code.sha256 == code.sha256:
                    return newest, False
            version = LayerVersion(name, last + 1, code, description, now)
            conn.execute(
                layers.update().where(layers.c.name == name)
                .values(last_version=version.number, updated_at=now)
            )
            conn.execute(layer_versions.insert().values(
                layer=name, number=version.number, code_sha256=code.sha256,
                code_size=code.size, description=description, created_at=now,
            ))
            return version, True

    def list_layers(self) -> list[Layer]:
        newest = (
            sa.select(layer_versions.c.layer, sa.func.max(layer_versions.c.number).label("n"))
            .group_by(layer_versions.c.layer).subquery()
        )
        query = (
            sa.select(layers, newest.c.n)
            .select_from(layers.outerjoin(newest, newest.c.layer == layers.c.name))
            .order_by(layers.c.name)
        )
        with self._engine.connect() as conn:
            return [
                Layer(r["name"], r["n"], _utc(r["created_at"]), _utc(r["updated_at"]))
                for r in conn.execute(query).mappings()
            ]

    def list_versions(self, name: str) -> list[LayerVersion]:
        with self._engine.connect() as conn:
            self._layer(conn, name)
            rows = conn.execute(
                sa.select(layer_versions).where(layer_versions.c.layer == name)
                .order_by(layer_versions.c.number)
            ).mappings()
            return [_version(r) for r in rows]

    def get_version(self, name: str, number: int) -> LayerVersion:
        with self._engine.connect() as conn:
            return self._get_version(conn, name, number)

    def newest(self, name: str) -> LayerVersion:
        """The layer's newest version; ``LayerNotFound`` when it has none."""
        with self._engine.connect() as conn:
            self._layer(conn, name)
            found = self._newest(conn, name)
        if found is None:
            raise LayerNotFound(f"layer {name!r} has no versions", {"layer": name})
        return found

    def delete_version(self, name: str, number: int) -> LayerVersion:
        with self._tx() as conn:
            version = self._get_version(conn, name, number)
            newest = self._newest(conn, name)
            users = _users(conn, name, number, newest is not None and newest.number == number)
            if users:
                shown = ", ".join(users[:5]) + (f" and {len(users) - 5} more" if len(users) > 5
                                                else "")
                raise Conflict(
                    f"layer {name!r} version {number} is used by {shown}: update or delete "
                    "them first",
                    {"layer": name, "version": number, "used_by": users},
                )
            conn.execute(layer_versions.delete().where(
                layer_versions.c.layer == name, layer_versions.c.number == number
            ))
            return version

    def _layer(self, conn: Connection, name: str) -> None:
        if conn.execute(sa.select(layers.c.name).where(layers.c.name == name)).first() is None:
            raise LayerNotFound(f"layer {name!r} does not exist", {"layer": name})

    def _get_version(self, conn: Connection, name: str, number: int) -> LayerVersion:
        row = conn.execute(sa.select(layer_versions).where(
            layer_versions.c.layer == name, layer_versions.c.number == number
        )).mappings().first()
        if row is None:
            self._layer(conn, name)
            raise LayerNotFound(
                f"layer {name!r} has no version {number}", {"layer": name, "version": number}
            )
        return _version(row)

    def _newest(self, conn: Connection, name: str) -> LayerVersion | None:
        row = conn.execute(
            sa.select(layer_versions).where(layer_versions.c.layer == name)
            .order_by(layer_versions.c.number.desc()).limit(1)
        ).mappings().first()
        return None if row is None else _version(row)


def _users(conn: Connection, name: str, number: int, is_newest: bool) -> list[str]:
    """``function:latest`` and ``function:N`` of every config listing this layer version
    (a bare name, stored before layers were pinned, uses the newest version)."""
    wanted = {f"{name}:{number}"} | ({name} if is_newest else set())
    found = [
        f"{r.name}:latest" for r in conn.execute(
            sa.select(functions.c.name, functions.c.config).order_by(functions.c.name)
        )
        if wanted & set(_layers_of(r.config))
    ]
    found += [
        f"{r.function}:{r.number}"
        for r in conn.execute(
            sa.select(versions.c.function, versions.c.number, versions.c.config)
            .order_by(versions.c.function, versions.c.number)
        )
        if wanted & set(_layers_of(r.config))
    ]
    return found


def _layers_of(config: Any) -> list[str]:
    value = config.get("layers") if isinstance(config, dict) else None
    return [str(v) for v in value] if isinstance(value, list) else []


def _version(row: Any) -> LayerVersion:
    return LayerVersion(
        layer=row["layer"], number=row["number"],
        code=CodeRef(row["code_sha256"], row["code_size"]),
        description=row["description"], created_at=_utc(row["created_at"]),
    )
