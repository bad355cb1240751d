"""MetadataStore on SQLAlchemy Core: SQLite (WAL) by default, PostgreSQL by URL."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import Connection, Engine

from ember.clock import Clock, SystemClock, utcnow
from ember.errors import (
    AliasNotFound,
    Conflict,
    FunctionNotFound,
    InvalidRequest,
    VersionNotFound,
)
from ember.model.function import (
    Alias,
    AsyncConfig,
    CodeRef,
    Function,
    FunctionConfig,
    TrafficSplit,
    Version,
)
from ember.store.base import Page
from ember.store.schema import aliases, functions, layer_versions, versions


def create_engine(url: str) -> Engine:
    """An engine for ``url``; SQLite gets WAL, foreign keys and a busy timeout."""
    if url.startswith("sqlite"):
        engine = sa.create_engine(
            url, connect_args={"check_same_thread": False, "timeout": 30}, pool_pre_ping=False
        )

        @event.listens_for(engine, "connect")
        def _pragmas(dbapi_conn: Any, _record: Any) -> None:
            # Transactions are begun by the "begin" hook below, not by the driver.
            dbapi_conn.isolation_level = None
            cursor = dbapi_conn.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.close()

        @event.listens_for(engine, "begin")
        def _begin(conn: Connection) -> None:
            # A writing transaction takes the write lock at BEGIN so that read-then-write
            # rules (publish, delete a version) are serialized instead of failing on lock
            # upgrade; readers keep WAL's concurrent snapshots.
            write = conn.get_execution_options().get("ember_write", False)
            conn.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")

        return engine
    return sa.create_engine(url, pool_pre_ping=True, pool_size=10, max_overflow=20)


@contextmanager
def write_transaction(engine: Engine) -> Iterator[Connection]:
    """A transaction that writes: on SQLite it takes the write lock at BEGIN, so that a
    read-then-write is serialized with other writers instead of failing when its read
    lock cannot be upgraded ("database is locked")."""
    with engine.connect() as conn:
        conn.execution_options(ember_write=True)
        with conn.begin():
            yield conn


def _utc(value: datetime) -> datetime:
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def _encode_cursor(name: str) -> str:
    return base64.urlsafe_b64encode(name.encode()).decode().rstrip("=")


def _decode_cursor(cursor: str) -> str:
    padded = cursor + "=" * (-len(cursor) % 4)
    try:
        return base64.b64decode(padded.encode(), altchars=b"-_", validate=True).decode()
    except ValueError as exc:
        raise InvalidRequest(
            "cursor is not valid: pass the next_cursor of a previous page",
            {"field": "cursor"},
        ) from exc


class SqlMetadataStore:
    """The MetadataStore over one SQLAlchemy engine."""

    def __init__(self, engine: Engine, clock: Clock | None = None) -> None:
        self._engine = engine
        self._clock = clock or SystemClock()

    @property
    def engine(self) -> Engine:
        return self._engine

    def _tx(self) -> AbstractContextManager[Connection]:
        return write_transaction(self._engine)

    # functions ---------------------------------------------------------------------------

    def create_function(self, function: Function) -> Function:
        with self._tx() as conn:
            if conn.execute(
                sa.select(functions.c.name).where(functions.c.name == function.name)
            ).first():
                raise Conflict(
                    f"function {function.name!r} already exists: update it, or delete it first",
                    {"function": function.name},
                )
            conn.execute(
                functions.insert().values(
                    name=function.name,
                    config=function.config.to_json(),
                    code_sha256=function.code.sha256,
                    code_size=function.code.size,
                    enabled=function.enabled,
                    async_paused=function.async_paused,
                    last_version=0,
                    created_at=function.created_at,
                    updated_at=function.updated_at,
                )
            )
        return function

    def get_function(self, name: str) -> Function:
        with self._engine.connect() as conn:
            return self._function(conn, name)

    def _function(self, conn: Connection, name: str, lock: bool = False) -> Function:
        query = sa.select(functions).where(functions.c.name == name)
        if lock:
            query = query.with_for_update()
        row = conn.execute(query).mappings().first()
        if row is None:
            raise FunctionNotFound(f"function {name!r} does not exist", {"function": name})
        return _function_from_row(row)

    def list_functions(
        self, *, prefix: str = "", tag: tuple[str, str | None] | None = None,
        limit: int = 100, cursor: str | None = None,
    ) -> Page[Function]:
        query = sa.select(functions).order_by(functions.c.name)
        if prefix:
            query = query.where(functions.c.name.startswith(prefix, autoescape=True))
        after = _decode_cursor(cursor) if cursor else None
        found: list[Function] = []
        # Tags live inside the JSON config, which SQLite and PostgreSQL query differently;
        # filtering in batches keeps one query for both and stops once a page is full.
        batch = max(limit + 1, 200)
        with self._engine.connect() as conn:
            while True:
                page_query = query if after is None else query.where(functions.c.name > after)
                rows = conn.execute(page_query.limit(batch)).mappings().all()
                for row in rows:
                    function = _function_from_row(row)
                    if tag is not None and not _has_tag(function.config, tag):
                        continue
                    if len(found) == limit:
                        return Page(found, _encode_cursor(found[-1].name))
                    found.append(function)
                if len(rows) < batch:
                    break
                after = rows[-1]["name"]
        return Page(found, None)

    def update_function(
        self, name: str, *, config: FunctionConfig | None = None, code: CodeRef | None = None,
        enabled: bool | None = None, async_paused: bool | None = None,
    ) -> Function:
        values: dict[str, Any] = {"updated_at": utcnow(self._clock)}
        if async_paused is not None:
            values["async_paused"] = async_paused
        if config is not None:
            values["config"] = config.to_json()
        if code is not None:
            values["code_sha256"] = code.sha256
            values["code_size"] = code.size
        if enabled is not None:
            values["enabled"] = enabled
        with self._tx() as conn:
            result = conn.execute(
                functions.update().where(functions.c.name == name).values(**values)
            )
            if result.rowcount == 0:
                raise FunctionNotFound(f"function {name!r} does not exist", {"function": name})
            return self._function(conn, name)

    def delete_function(self, name: str) -> Function:
        with self._tx() as conn:
            function = self._function(conn, name, lock=True)
            conn.execute(aliases.delete().where(aliases.c.function == name))
            conn.execute(versions.delete().where(versions.c.function == name))
            conn.execute(functions.delete().where(functions.c.name == name))
            return function

    # versions ----------------------------------------------------------------------------

    def publish_version(self, name: str, description: str) -> tuple[Version, bool]:
        with self._tx() as conn:
            # The row lock serializes concurrent publishes of one function on PostgreSQL;
            # SQLite's BEGIN IMMEDIATE does the same.
            function = self._function(conn, name, lock=True)
            newest = conn.execute(
                sa.select(versions)
                .where(versions.c.function == name)
                .order_by(versions.c.number.desc())
                .limit(1)
            ).mappings().first()
            if newest is not None:
                previous = _version_from_row(newest)
                if previous.same_content(function.config, function.code):
                    return previous, False
            number = function.last_version + 1
            version = Version(
                function=name,
                number=number,
                config=function.config,
                code=function.code,
                description=description,
                created_at=utcnow(self._clock),
            )
            conn.execute(
                functions.update().where(functions.c.name == name).values(last_version=number)
            )
            conn.execute(
                versions.insert().values(
                    function=name,
                    number=number,
                    config=version.config.to_json(),
                    code_sha256=version.code.sha256,
                    code_size=version.code.size,
                    description=description,
                    created_at=version.created_at,
                )
            )
            return version, True

    def get_version(self, name: str, number: int) -> Version:
        with self._engine.connect() as conn:
            return self._version(conn, name, number)

    def _version(self, conn: Connection, name: str, number: int) -> Version:
        row = conn.execute(
            sa.select(versions).where(versions.c.function == name, versions.c.number == number)
        ).mappings().first()
        if row is None:
            self._function(conn, name)
            raise VersionNotFound(
                f"function {name!r} has no version {number}",
                {"function": name, "version": number},
            )
        return _version_from_row(row)

    def list_versions(self, name: str) -> list[Version]:
        with self._engine.connect() as conn:
            self._function(conn, name)
            rows = conn.execute(
                sa.select(versions).where(versions.c.function == name).order_by(versions.c.number)
            ).mappings()
            return [_version_from_row(r) for r in rows]

    def delete_version(self, name: str, number: int) -> Version:
        with self._tx() as conn:
            self._function(conn, name, lock=True)
            version = self._version(conn, name, number)
            holders = [
                a.name for a in self._aliases(conn, name) if number in a.versions()
            ]
            if holders:
                raise Conflict(
                    f"version {number} of {name!r} is used by alias(es) {', '.join(holders)}: "
                    "point them at another version or delete them first",
                    {"function": name, "version": number, "aliases": holders},
                )
            conn.execute(
                versions.delete().where(versions.c.function == name, versions.c.number == number)
            )
            return version

    # aliases -----------------------------------------------------------------------------

    def put_alias(
        self, name: str, alias: str, *, version: int, additional_version: int | None,
        weight: float | None, description: str, async_config: AsyncConfig | None = None,
    ) -> tuple[Alias, bool]:
        now = utcnow(self._clock)
        with self._tx() as conn:
            self._function(conn, name, lock=True)
            for number in (version, additional_version):
                if number is not None:
                    self._version(conn, name, number)
            values = {
                "version": version,
                "additional_version": additional_version,
                "weight": weight,
                "description": description,
                "async_config": async_config.model_dump(mode="json") if async_config else None,
                "updated_at": now,
            }
            result = conn.execute(
                aliases.update()
                .where(aliases.c.function == name, aliases.c.name == alias)
                .values(**values)
            )
            created = result.rowcount == 0
            if created:
                conn.execute(
                    aliases.insert().values(function=name, name=alias, created_at=now, **values)
                )
            return self._alias(conn, name, alias), created

    def get_alias(self, name: str, alias: str) -> Alias:
        with self._engine.connect() as conn:
            return self._alias(conn, name, alias)

    def _alias(self, conn: Connection, name: str, alias: str) -> Alias:
        row = conn.execute(
            sa.select(aliases).where(aliases.c.function == name, aliases.c.name == alias)
        ).mappings().first()
        if row is None:
            self._function(conn, name)
            raise AliasNotFound(
                f"function {name!r} has no alias {alias!r}", {"function": name, "alias": alias}
            )
        return _alias_from_row(row)

    def _aliases(self, conn: Connection, name: str) -> list[Alias]:
        rows = conn.execute(
            sa.select(aliases).where(aliases.c.function == name).order_by(aliases.c.name)
        ).mappings()
        return [_alias_from_row(r) for r in rows]

    def list_aliases(self, name: str) -> list[Alias]:
        with self._engine.connect() as conn:
            self._function(conn, name)
            return self._aliases(conn, name)

    def delete_alias(self, name: str, alias: str) -> Alias:
        with self._tx() as conn:
            found = self._alias(conn, name, alias)
            conn.execute(
                aliases.delete().where(aliases.c.function == name, aliases.c.name == alias)
            )
            return found

    # artifacts ---------------------------------------------------------------------------

    def code_in_use(self, sha256: str) -> bool:
        with self._engine.connect() as conn:
            for table in (functions, versions, layer_versions):
                if conn.execute(
                    sa.select(sa.literal(1)).where(table.c.code_sha256 == sha256).limit(1)
                ).first():
                    return True
        return False

    def close(self) -> None:
        self._engine.dispose()


def _has_tag(config: FunctionConfig, tag: tuple[str, str | None]) -> bool:
    key, value = tag
    return key in config.tags and (value is None or config.tags[key] == value)


def _function_from_row(row: Any) -> Function:
    return Function(
        name=row["name"],
        config=FunctionConfig.model_validate(row["config"]),
        code=CodeRef(row["code_sha256"], row["code_size"]),
        enabled=row["enabled"],
        created_at=_utc(row["created_at"]),
        updated_at=_utc(row["updated_at"]),
        last_version=row["last_version"],
        async_paused=row["async_paused"],
    )


def _version_from_row(row: Any) -> Version:
    return Version(
        function=row["function"],
        number=row["number"],
        config=FunctionConfig.model_validate(row["config"]),
        code=CodeRef(row["code_sha256"], row["code_size"]),
        description=row["description"],
        created_at=_utc(row["created_at"]),
    )


def _alias_from_row(row: Any) -> Alias:
    split = None
    if row["additional_version"] is not None:
        split = TrafficSplit(row["additional_version"], row["weight"])
    return Alias(
        function=row["function"],
        name=row["name"],
        version=row["version"],
        description=row["description"],
        created_at=_utc(row["created_at"]),
        updated_at=_utc(row["updated_at"]),
        split=split,
        async_config=(
            AsyncConfig.model_validate(row["async_config"]) if row["async_config"] else None
        ),
    )
