"""Web console sessions in the metadata store (every node of a cluster sees them)."""

from __future__ import annotations

from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from ember.store.schema import console_sessions
from ember.store.sql import write_transaction


@dataclass(frozen=True)
class SessionRow:
    id_sha256: str
    key_ref: str
    key_name: str
    created_at: float
    expires_at: float


class SqlSessionStore:
    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    def create(self, row: SessionRow) -> None:
        with write_transaction(self._engine) as conn:
            conn.execute(console_sessions.insert().values(
                id_sha256=row.id_sha256, key_ref=row.key_ref, key_name=row.key_name,
                created_at=row.created_at, expires_at=row.expires_at))

    def get(self, id_sha256: str) -> SessionRow | None:
        with self._engine.connect() as conn:
            found = conn.execute(sa.select(console_sessions).where(
                console_sessions.c.id_sha256 == id_sha256)).mappings().first()
        return None if found is None else SessionRow(**dict(found))

    def delete(self, id_sha256: str) -> None:
        with write_transaction(self._engine) as conn:
            conn.execute(console_sessions.delete().where(
                console_sessions.c.id_sha256 == id_sha256))

    def purge(self, before: float) -> int:
        """Remove the sessions that expired before ``before``; how many."""
        with write_transaction(self._engine) as conn:
            result = conn.execute(console_sessions.delete().where(
                console_sessions.c.expires_at < before))
        return int(result.rowcount or 0)
