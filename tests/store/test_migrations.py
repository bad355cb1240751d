"""Alembic migrations: an old database is brought forward with its data kept, on SQLite and
(when EMBER_DATABASE_URL points at one) on PostgreSQL."""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic import command

from ember.model.trigger import Trigger, key_digest
from ember.settings import Settings
from ember.store.builds import SqlBuildStore
from ember.store.migrate import alembic_config, upgrade
from ember.store.sql import SqlMetadataStore, create_engine
from ember.store.triggers import SqlTriggerStore


@pytest.fixture
def empty_url(tmp_path: Path) -> Iterator[str]:
    base = os.environ.get("EMBER_DATABASE_URL")
    if not base:
        yield f"sqlite:///{tmp_path / 'old.db'}"
        return
    admin = sa.create_engine(Settings(database_url=base).resolved_database_url(),
                             isolation_level="AUTOCOMMIT")
    name = f"ember_migrate_{uuid.uuid4().hex[:8]}"
    with admin.connect() as conn:
        conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
    try:
        yield sa.make_url(Settings(database_url=base).resolved_database_url()).set(
            database=name
        ).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.dispose()


@contextmanager
def _old_function_at(url: str, revision: str) -> Iterator[sa.Engine]:
    """An engine on a database migrated to ``revision`` only, holding the function ``old``."""
    engine = create_engine(url)
    try:
        config = alembic_config()
        with engine.begin() as conn:
            config.attributes["connection"] = conn
            command.upgrade(config, revision)
        with engine.begin() as conn:
            conn.execute(sa.text(
                "INSERT INTO functions (name, config, code_sha256, code_size, enabled, "
                "last_version, created_at, updated_at) VALUES "
                "('old', '{}', :sha, 10, :yes, 0, :now, :now)"
            ), {"sha": "a" * 64, "yes": True, "now": datetime.now(UTC)})
        yield engine
    finally:
        engine.dispose()


def test_upgrade_from_the_first_revision_keeps_functions(empty_url: str) -> None:
    with _old_function_at(empty_url, "0001") as engine:
        upgrade(engine)
        upgrade(engine)  # a second start finds nothing to do
        function = SqlMetadataStore(engine).get_function("old")
        assert function.async_paused is False
        assert function.config.memory_mb == 256
        with engine.connect() as conn:
            head = conn.exec_driver_sql("SELECT version_num FROM alembic_version").scalar()
        assert head == "0015"
        assert SqlBuildStore(engine).list_for("old") == []


def test_upgrade_from_0007_keeps_triggers_bound_to_their_function(empty_url: str) -> None:
    with _old_function_at(empty_url, "0007") as engine:
        with engine.begin() as conn:
            # The table as 0007 made it: no target column.
            old = sa.table("triggers", *(sa.column(c) for c in (
                "name", "function", "qualifier", "kind", "state", "description",
                "created_at", "updated_at")), sa.column("source", sa.JSON))
            conn.execute(old.insert().values(
                name="tick", function="old", qualifier="latest", kind="timer",
                source={"kind": "timer", "schedule": "rate(1 minute)"}, state="enabled",
                description="", created_at=1.0, updated_at=1.0))
        upgrade(engine)
        store = SqlTriggerStore(engine)
        kept = store.get("tick")
        assert (kept.target, kept.function, kept.qualifier) == ("function", "old", "latest")
        # The new columns take a trigger of the event bus, which no function's deletion takes.
        store.create(Trigger("bus", None, None, kept.source, "enabled", "", 2.0, 2.0, "events"))
        assert store.get("bus").target == "events"
        with engine.begin() as conn:
            conn.execute(sa.text("DELETE FROM functions WHERE name = 'old'"))
        assert [t.name for t in store.list()] == ["bus"]  # the foreign key still cascades


def test_upgrade_from_0008_keeps_triggers_and_takes_a_workflow_target(empty_url: str) -> None:
    with _old_function_at(empty_url, "0008") as engine:
        with engine.begin() as conn:
            # The table as 0008 made it: a target, no workflow column.
            old = sa.table("triggers", *(sa.column(c) for c in (
                "name", "function", "qualifier", "kind", "state", "description",
                "created_at", "updated_at", "target")), sa.column("source", sa.JSON))
            source = {"kind": "timer", "schedule": "rate(1 minute)"}
            conn.execute(old.insert(), [
                {"name": "tick", "function": "old", "qualifier": "latest", "kind": "timer",
                 "source": source, "state": "enabled", "description": "", "created_at": 1.0,
                 "updated_at": 1.0, "target": "function"},
                {"name": "bus", "function": None, "qualifier": None, "kind": "timer",
                 "source": source, "state": "paused", "description": "the bus",
                 "created_at": 1.0, "updated_at": 1.0, "target": "events"},
            ])
        upgrade(engine)
        store = SqlTriggerStore(engine)
        tick, bus = store.get("tick"), store.get("bus")
        assert (tick.target, tick.function, tick.qualifier, tick.workflow) == (
            "function", "old", "latest", None)
        assert (bus.target, bus.function, bus.state, bus.description, bus.workflow) == (
            "events", None, "paused", "the bus", None)
        store.create(Trigger("start", None, None, tick.source, "enabled", "", 2.0, 2.0,
                             "workflow", "orders"))
        assert store.get("start").workflow == "orders"
        assert [t.name for t in store.list(workflow="orders")] == ["start"]


def test_upgrade_to_0011_keeps_http_trigger_keys_as_digests(empty_url: str) -> None:
    key = "an-http-trigger-key-0123456789"
    with _old_function_at(empty_url, "0010") as engine:
        with engine.begin() as conn:
            old = sa.table("triggers", *(sa.column(c) for c in (
                "name", "function", "qualifier", "kind", "state", "description",
                "created_at", "updated_at", "target")), sa.column("source", sa.JSON))
            conn.execute(old.insert().values(
                name="web", function="old", qualifier="latest", kind="http",
                source={"kind": "http", "path": "/web", "methods": ["GET"],
                        "auth": "api_key", "api_key": key},
                state="enabled", description="", created_at=1.0, updated_at=1.0,
                target="function"))
        upgrade(engine)
        with engine.connect() as conn:
            stored = conn.execute(sa.text("SELECT source FROM triggers")).scalar_one()
        text = stored if isinstance(stored, str) else json.dumps(stored)
        assert key not in text and "sha256:" in text
        source = SqlTriggerStore(engine).get("web").source
        assert source.api_key == key_digest(key)  # type: ignore[union-attr]
