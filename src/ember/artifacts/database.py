"""Artifacts in the metadata database, so that every node sharing it can run every function.

The zips live in the ``artifacts`` table (SQLite or PostgreSQL, the same database as the
functions that name them). Each node keeps a cache, a ``FilesystemArtifactStore`` in its own
home: the unpacked trees instances run from are always local. ``path`` fetches a zip the
cache lacks from the database once, checks that its bytes still hash to its sha256, and
unpacks it with the same safety checks as an upload, so a row written by a node with other
limits, or damaged in the database, never reaches the disk unchecked.

A node's cache is not cleaned when another node deletes an artifact: what it holds is still
the right content for its sha256, and an artifact is only deleted once nothing references it.
"""

from __future__ import annotations

import builtins
import hashlib
import re
import threading
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from ember.artifacts.base import ArtifactLimits
from ember.artifacts.filesystem import FilesystemArtifactStore
from ember.artifacts.unzip import check_size
from ember.clock import Clock, SystemClock, utcnow
from ember.errors import EmberError, NotFound
from ember.model.function import CodeRef
from ember.store.schema import artifacts
from ember.store.sql import write_transaction

_SHA256 = re.compile(r"^[0-9a-f]{64}$")


class SqlArtifactStore:
    """An ``ArtifactStore`` whose zips live in the metadata database, cached per node.

    Thread-safe; several nodes (each with its own ``cache``) may share one database: two
    ``put``s of the same bytes, on one node or two, leave one row.

    Args:
        engine: the metadata database (migrated: it holds the ``artifacts`` table).
        cache: this node's store, in its home; it also gives the limits every zip is held
            to, when put and when fetched.
        clock: the time rows are stamped with.
    """

    def __init__(
        self, engine: Engine, cache: FilesystemArtifactStore, clock: Clock | None = None
    ) -> None:
        self._engine = engine
        self.cache = cache
        self._clock = clock or SystemClock()
        self._guard = threading.Lock()
        self._fetching: dict[str, threading.Lock] = {}

    @property
    def limits(self) -> ArtifactLimits:
        return self.cache.limits

    def put(self, data: bytes) -> CodeRef:
        """Check and store a zip in the database, and unpack it in this node's cache; the
        same bytes are stored once.

        Raises:
            PayloadTooLarge: ``data`` is over ``limits.max_zip_bytes``.
            InvalidCode: ``data`` is not a zip or is unsafe; nothing is written then.
        """
        check_size(len(data), self.limits)
        # The cache checks every entry before writing anything: an unsafe zip stops here,
        # before the database sees it.
        ref = self.cache.put(data)
        try:
            with write_transaction(self._engine) as conn:
                if not self._stored(conn, ref.sha256):
                    conn.execute(artifacts.insert().values(
                        sha256=ref.sha256, size=ref.size, data=data,
                        created_at=utcnow(self._clock),
                    ))
        except sa.exc.IntegrityError:
            # Another node inserted the same bytes between the check and the insert
            # (PostgreSQL's writers do not wait for each other as SQLite's do).
            if not self.exists(ref.sha256):
                raise
        return ref

    def path(self, sha256: str) -> Path:
        """The unpacked, read-only directory of an artifact in this node's cache, fetched
        from the database first when the cache lacks it.

        Raises:
            NotFound: no artifact has this sha256.
            EmberError: (``Internal``) the stored bytes do not hash to ``sha256``.
            InvalidCode, PayloadTooLarge: the stored zip is refused by this node's limits.
        """
        if not _SHA256.match(sha256):
            raise _not_found(sha256)
        if self.cache.exists(sha256):
            return self.cache.path(sha256)
        # One fetch per sha256 at a time: the others wait and find it cached.
        with self._fetch_lock(sha256):
            if not self.cache.exists(sha256):
                self.cache.put(self._fetch(sha256))
        return self.cache.path(sha256)

    def exists(self, sha256: str) -> bool:
        """Whether the database holds an artifact (this node may not have fetched it yet)."""
        if not _SHA256.match(sha256):
            return False
        with self._engine.connect() as conn:
            return self._stored(conn, sha256)

    def read(self, sha256: str) -> bytes:
        """The zip bytes of an artifact: from this node's cache, else from the database.

        Raises:
            NotFound: no artifact has this sha256.
            EmberError: (``Internal``) the stored bytes do not hash to ``sha256``.
        """
        if not _SHA256.match(sha256):
            raise _not_found(sha256)
        if self.cache.exists(sha256):
            try:
                return self.cache.read(sha256)
            except NotFound:
                pass  # deleted meanwhile: the database says whether it is still stored
        return self._fetch(sha256)

    def delete(self, sha256: str) -> None:
        """Remove an artifact from the database and this node's cache; a missing artifact
        is not an error."""
        if not _SHA256.match(sha256):
            return
        with write_transaction(self._engine) as conn:
            conn.execute(artifacts.delete().where(artifacts.c.sha256 == sha256))
        self.cache.delete(sha256)

    def list(self) -> builtins.list[str]:
        """The sha256 of every artifact in the database, sorted."""
        with self._engine.connect() as conn:
            rows = conn.execute(sa.select(artifacts.c.sha256).order_by(artifacts.c.sha256))
            return [row[0] for row in rows]

    def _stored(self, conn: Connection, sha256: str) -> bool:
        found = conn.execute(
            sa.select(sa.literal(1)).where(artifacts.c.sha256 == sha256)
        ).first()
        return found is not None

    def _fetch(self, sha256: str) -> bytes:
        with self._engine.connect() as conn:
            data = conn.execute(
                sa.select(artifacts.c.data).where(artifacts.c.sha256 == sha256)
            ).scalar()
        if data is None:
            raise _not_found(sha256)
        data = bytes(data)  # PostgreSQL's driver gives a memoryview
        actual = hashlib.sha256(data).hexdigest()
        if actual != sha256:
            raise EmberError(
                f"artifact {sha256!r} is corrupt in the database: its {len(data)} bytes "
                f"hash to {actual!r}: the database's copy is damaged",
                {"sha256": sha256, "actual_sha256": actual, "size": len(data)},
            )
        return data

    def _fetch_lock(self, sha256: str) -> threading.Lock:
        with self._guard:
            return self._fetching.setdefault(sha256, threading.Lock())


def _not_found(sha256: str) -> NotFound:
    return NotFound(f"artifact {sha256!r} not found", {"sha256": sha256})
