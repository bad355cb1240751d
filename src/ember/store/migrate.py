"""Applies the Alembic migrations in ``store/migrations`` to a database on start."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy.engine import Engine

MIGRATIONS = Path(__file__).parent / "migrations"


def alembic_config() -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    return config


def upgrade(engine: Engine) -> None:
    """Bring the schema to the newest revision; a no-op when it is there already."""
    config = alembic_config()
    with engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            # Several servers may start at once against one database: migrate one at a time.
            conn.exec_driver_sql("SELECT pg_advisory_xact_lock(7340114)")
        config.attributes["connection"] = conn
        command.upgrade(config, "head")
