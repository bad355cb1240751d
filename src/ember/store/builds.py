"""Dependency builds and their logs in the metadata store (the same database as functions)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from ember.errors import BuildNotFound
from ember.model.build import FAILED, RUNNING, Build
from ember.store.schema import builds, dependencies
from ember.store.sql import _utc, write_transaction

KEEP_PER_FUNCTION = 20
"""Finished builds kept per function (and for builds of no function): older ones go when a
new one is recorded."""


class SqlBuildStore:
    """Build rows: made running, their log replaced as it grows, finished once. Every method
    is atomic. Raises ``BuildNotFound`` for an unknown id."""

    def __init__(self, engine: Engine, keep: int = KEEP_PER_FUNCTION) -> None:
        self._engine = engine
        self._keep = keep

    def create(self, build: Build) -> Build:
        """Record ``build``, dropping the oldest finished builds of its function past the
        number kept."""
        with write_transaction(self._engine) as conn:
            conn.execute(builds.insert().values(
                id=build.id, function=build.function, key=build.key, status=build.status,
                cached=build.cached, requirements_sha256=build.requirements_sha256,
                python=build.python, log=build.log, log_size=build.log_size,
                error=build.error, created_at=build.created_at, finished_at=build.finished_at,
            ))
            same = (
                builds.c.function.is_(None) if build.function is None
                else builds.c.function == build.function
            )
            old = [r.id for r in conn.execute(
                sa.select(builds.c.id).where(same, builds.c.status != RUNNING)
                .order_by(builds.c.created_at.desc(), builds.c.id.desc()).offset(self._keep)
            )]
            if old:
                conn.execute(builds.delete().where(builds.c.id.in_(old)))
        return build

    def update_log(self, build_id: str, log: str, log_size: int) -> None:
        """Replace the kept log of a running build (a poller reads it as it grows)."""
        with write_transaction(self._engine) as conn:
            conn.execute(
                builds.update().where(builds.c.id == build_id, builds.c.status == RUNNING)
                .values(log=log, log_size=log_size)
            )

    def finish(
        self, build_id: str, *, status: str, cached: bool, log: str, log_size: int,
        error: str | None, finished_at: datetime,
    ) -> Build:
        """Record how a build ended; returns it as stored."""
        with write_transaction(self._engine) as conn:
            conn.execute(builds.update().where(builds.c.id == build_id).values(
                status=status, cached=cached, log=log, log_size=log_size, error=error,
                finished_at=finished_at,
            ))
        return self.get(build_id)

    def get(self, build_id: str) -> Build:
        with self._engine.connect() as conn:
            row = conn.execute(
                sa.select(builds).where(builds.c.id == build_id)
            ).mappings().first()
        if row is None:
            raise BuildNotFound(f"build {build_id!r} does not exist", {"build_id": build_id})
        return _build(row)

    def list_for(self, function: str) -> list[Build]:
        """The function's builds, newest first, without their logs."""
        columns = [c for c in builds.c if c.name != "log"]
        with self._engine.connect() as conn:
            rows = conn.execute(
                sa.select(*columns).where(builds.c.function == function)
                .order_by(builds.c.created_at.desc(), builds.c.id.desc())
            ).mappings().all()
        return [_build(r, log="") for r in rows]

    def delete_function(self, function: str) -> None:
        with write_transaction(self._engine) as conn:
            conn.execute(builds.delete().where(builds.c.function == function))

    def fail_running(self, before: datetime, error: str, now: datetime) -> int:
        """Mark builds still running since before ``before`` failed (their server stopped
        during them); returns how many."""
        with write_transaction(self._engine) as conn:
            result = conn.execute(
                builds.update()
                .where(builds.c.status == RUNNING, builds.c.created_at < before)
                .values(status=FAILED, error=error, finished_at=now)
            )
        return int(result.rowcount or 0)


    # dependencies shared between nodes ----------------------------------------------------

    def shared(self, key: str) -> str | None:
        """The sha256 of the artifact holding the dependencies built for ``key``, when a
        node stored them for the others."""
        with self._engine.connect() as conn:
            found = conn.execute(
                sa.select(dependencies.c.sha256).where(dependencies.c.key == key)
            ).scalar()
        return None if found is None else str(found)

    def share(self, key: str, sha256: str, at: datetime) -> None:
        """Record that the artifact ``sha256`` holds the dependencies built for ``key``; the
        first node to record a key keeps it (its build is as good as any other's)."""
        try:
            with write_transaction(self._engine) as conn:
                if conn.execute(
                    sa.select(dependencies.c.key).where(dependencies.c.key == key)
                ).first() is None:
                    conn.execute(dependencies.insert().values(
                        key=key, sha256=sha256, created_at=at))
        except sa.exc.IntegrityError:
            pass  # another node recorded the key between the check and the insert

    def unshare(self, key: str) -> None:
        """Forget the shared artifact of ``key`` (it could not be fetched)."""
        with write_transaction(self._engine) as conn:
            conn.execute(dependencies.delete().where(dependencies.c.key == key))


def _build(row: Any, log: str | None = None) -> Build:
    finished = row["finished_at"]
    return Build(
        id=row["id"], function=row["function"], key=row["key"], status=row["status"],
        cached=bool(row["cached"]), requirements_sha256=row["requirements_sha256"],
        python=row["python"], log=row["log"] if log is None else log,
        log_size=int(row["log_size"]), error=row["error"],
        created_at=_utc(row["created_at"]),
        finished_at=None if finished is None else _utc(finished),
    )
