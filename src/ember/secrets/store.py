"""Secret rows in the metadata database: encrypted values, never a plain one."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from ember.errors import Conflict, SecretNotFound
from ember.store.schema import functions, secrets, versions
from ember.store.sql import _utc, write_transaction


@dataclass(frozen=True)
class SecretInfo:
    """What may be shown of a secret: its name and times, never its value."""

    name: str
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True)
class Sealed:
    """A secret's value as stored: the ciphertext, its nonce and the format of both."""

    ciphertext: bytes
    nonce: bytes
    format: int


class SqlSecretStore:
    """Secret rows. Every method is atomic.

    Raises ``SecretNotFound`` for a missing secret and ``Conflict`` when a function's
    ``latest`` or one of its versions still lists a secret being deleted.
    """

    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    def put(self, name: str, sealed: Sealed, now: datetime) -> tuple[SecretInfo, bool]:
        """Store ``sealed`` as the value of ``name``; returns (secret, created)."""
        values = {"ciphertext": sealed.ciphertext, "nonce": sealed.nonce,
                  "format": sealed.format, "updated_at": now}
        with write_transaction(self._engine) as conn:
            row = conn.execute(
                sa.select(secrets.c.created_at).where(secrets.c.name == name).with_for_update()
            ).first()
            if row is None:
                conn.execute(secrets.insert().values(name=name, created_at=now, **values))
                return SecretInfo(name, now, now), True
            conn.execute(secrets.update().where(secrets.c.name == name).values(**values))
            return SecretInfo(name, _utc(row.created_at), now), False

    def get(self, name: str) -> SecretInfo:
        with self._engine.connect() as conn:
            row = conn.execute(_info().where(secrets.c.name == name)).first()
        if row is None:
            raise _not_found(name)
        return _secret(row)

    def list_secrets(self) -> list[SecretInfo]:
        with self._engine.connect() as conn:
            return [_secret(r) for r in conn.execute(_info().order_by(secrets.c.name))]

    def existing(self, names: Iterable[str]) -> set[str]:
        """Which of ``names`` are stored."""
        wanted = set(names)
        if not wanted:
            return set()
        with self._engine.connect() as conn:
            return set(conn.execute(
                sa.select(secrets.c.name).where(secrets.c.name.in_(wanted))
            ).scalars())

    def sealed(self, names: Iterable[str]) -> dict[str, Sealed]:
        """The stored values of ``names``; ``SecretNotFound`` naming the first missing."""
        wanted = list(dict.fromkeys(names))
        if not wanted:
            return {}
        with self._engine.connect() as conn:
            rows = conn.execute(
                sa.select(secrets.c.name, secrets.c.ciphertext, secrets.c.nonce,
                          secrets.c.format).where(secrets.c.name.in_(wanted))
            )
            found = {r.name: Sealed(bytes(r.ciphertext), bytes(r.nonce), r.format)
                     for r in rows}
        for name in wanted:
            if name not in found:
                raise _not_found(name)
        return found

    def all_sealed(self) -> dict[str, Sealed]:
        """Every stored value, by name (to check the master key opens them)."""
        with self._engine.connect() as conn:
            rows = conn.execute(sa.select(secrets.c.name, secrets.c.ciphertext,
                                          secrets.c.nonce, secrets.c.format))
            return {r.name: Sealed(bytes(r.ciphertext), bytes(r.nonce), r.format)
                    for r in rows}

    def delete(self, name: str, force: bool = False) -> SecretInfo:
        """Delete the secret; unless ``force``, ``Conflict`` while a config lists it."""
        with write_transaction(self._engine) as conn:
            row = conn.execute(_info().where(secrets.c.name == name)).first()
            if row is None:
                raise _not_found(name)
            users = [] if force else users_of(conn, name)
            if users:
                names = sorted({u.split(":", 1)[0] for u in users})
                shown = ", ".join(users[:5]) + (
                    f" and {len(users) - 5} more" if len(users) > 5 else "")
                raise Conflict(
                    f"secret {name!r} is used by {shown}: remove it from their config "
                    "(secrets) first, or delete it with force (those functions then fail to "
                    "start new instances until it is set again)",
                    {"secret": name, "functions": names, "used_by": users},
                )
            conn.execute(secrets.delete().where(secrets.c.name == name))
            return _secret(row)


def users_of(conn: Connection, name: str) -> list[str]:
    """``function:latest`` and ``function:N`` of every config listing the secret."""
    found = [
        f"{r.name}:latest" for r in conn.execute(
            sa.select(functions.c.name, functions.c.config).order_by(functions.c.name))
        if name in _secrets_of(r.config)
    ]
    found += [
        f"{r.function}:{r.number}" for r in conn.execute(
            sa.select(versions.c.function, versions.c.number, versions.c.config)
            .order_by(versions.c.function, versions.c.number))
        if name in _secrets_of(r.config)
    ]
    return found


def _secrets_of(config: Any) -> list[str]:
    """The secrets a stored config lists, as variables or as files."""
    if not isinstance(config, dict):
        return []
    found: list[str] = []
    for key in ("secrets", "secret_files"):
        value = config.get(key)
        if isinstance(value, list):
            found += [str(v) for v in value]
    return found


def _info() -> sa.Select[Any]:
    return sa.select(secrets.c.name, secrets.c.created_at, secrets.c.updated_at)


def _secret(row: Any) -> SecretInfo:
    return SecretInfo(row.name, _utc(row.created_at), _utc(row.updated_at))


def _not_found(name: str) -> SecretNotFound:
    return SecretNotFound(
        f"secret {name!r} does not exist: set it with `ember secret set {name}`",
        {"secret": name},
    )
