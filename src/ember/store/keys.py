"""API keys and the audit log in the metadata store."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from ember.errors import Conflict, KeyNotFound
from ember.model.key import ApiKey, AuditRecord
from ember.store.schema import api_keys, audit_log
from ember.store.sql import _utc, write_transaction


class SqlKeyStore:
    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    def create(self, key: ApiKey) -> ApiKey:
        with write_transaction(self._engine) as conn:
            if conn.execute(sa.select(api_keys.c.name).where(
                    api_keys.c.name == key.name)).first():
                raise Conflict(f"a key named {key.name!r} exists: revoke it first, or pick "
                               "another name", {"key": key.name})
            conn.execute(api_keys.insert().values(
                name=key.name, key_id=key.key_id, secret_sha256=key.secret_sha256,
                role=key.role, functions=list(key.functions), created_at=key.created_at,
                expires_at=key.expires_at))
        return key

    def by_id(self, key_id: str) -> ApiKey | None:
        with self._engine.connect() as conn:
            row = conn.execute(sa.select(api_keys).where(api_keys.c.key_id == key_id)
                               ).mappings().first()
        return None if row is None else _key(row)

    def get(self, name: str) -> ApiKey:
        with self._engine.connect() as conn:
            row = conn.execute(sa.select(api_keys).where(api_keys.c.name == name)
                               ).mappings().first()
        if row is None:
            raise KeyNotFound(f"no key is named {name!r}", {"key": name})
        return _key(row)

    def all(self) -> list[ApiKey]:
        with self._engine.connect() as conn:
            rows = conn.execute(sa.select(api_keys).order_by(api_keys.c.name)).mappings()
            return [_key(r) for r in rows]

    def delete(self, name: str) -> ApiKey:
        found = self.get(name)
        with write_transaction(self._engine) as conn:
            conn.execute(api_keys.delete().where(api_keys.c.name == name))
        return found

    def audit(self, at: datetime, key: str, action: str, resource: str, status: int) -> None:
        with write_transaction(self._engine) as conn:
            conn.execute(audit_log.insert().values(
                at=at, key=key, action=action[:256], resource=resource[:1024], status=status))

    def audit_records(self, *, key: str | None = None, since: datetime | None = None,
                      limit: int = 100) -> list[AuditRecord]:
        """Newest first."""
        query = sa.select(audit_log).order_by(audit_log.c.id.desc()).limit(limit)
        if key is not None:
            query = query.where(audit_log.c.key == key)
        if since is not None:
            query = query.where(audit_log.c.at >= since)
        with self._engine.connect() as conn:
            return [AuditRecord(**{**dict(r), "at": _utc(r["at"])})
                    for r in conn.execute(query).mappings()]

    def purge_audit(self, before: datetime) -> int:
        with write_transaction(self._engine) as conn:
            result = conn.execute(audit_log.delete().where(audit_log.c.at < before))
        return int(result.rowcount or 0)


def _key(row: Any) -> ApiKey:
    return ApiKey(name=row["name"], role=row["role"], functions=tuple(row["functions"]),
                  key_id=row["key_id"], secret_sha256=row["secret_sha256"],
                  created_at=_utc(row["created_at"]),
                  expires_at=_utc(row["expires_at"]) if row["expires_at"] else None)
