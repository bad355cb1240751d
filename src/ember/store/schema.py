"""The one SQLAlchemy schema shared by SQLite and PostgreSQL; migrations create exactly this."""

from __future__ import annotations

import sqlalchemy as sa

metadata = sa.MetaData()

functions = sa.Table(
    "functions",
    metadata,
    sa.Column("name", sa.String(64), primary_key=True),
    sa.Column("config", sa.JSON, nullable=False),
    sa.Column("code_sha256", sa.String(64), nullable=False),
    sa.Column("code_size", sa.BigInteger, nullable=False),
    sa.Column("enabled", sa.Boolean, nullable=False),
    # Async events of a paused function stay queued until it is resumed.
    sa.Column("async_paused", sa.Boolean, nullable=False, server_default=sa.false()),
    # Version numbers are never reused, even after a version is deleted.
    sa.Column("last_version", sa.Integer, nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
)

versions = sa.Table(
    "versions",
    metadata,
    sa.Column(
        "function",
        sa.String(64),
        sa.ForeignKey("functions.name", ondelete="CASCADE"),
        primary_key=True,
    ),
    sa.Column("number", sa.Integer, primary_key=True),
    sa.Column("config", sa.JSON, nullable=False),
    sa.Column("code_sha256", sa.String(64), nullable=False),
    sa.Column("code_size", sa.BigInteger, nullable=False),
    sa.Column("description", sa.String(256), nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
)

aliases = sa.Table(
    "aliases",
    metadata,
    sa.Column(
        "function",
        sa.String(64),
        sa.ForeignKey("functions.name", ondelete="CASCADE"),
        primary_key=True,
    ),
    sa.Column("name", sa.String(64), primary_key=True),
    sa.Column("version", sa.Integer, nullable=False),
    sa.Column("additional_version", sa.Integer, nullable=True),
    sa.Column("weight", sa.Float, nullable=True),
    # Async settings of the alias; None: those of the version it points at.
    sa.Column("async_config", sa.JSON, nullable=True),
    sa.Column("description", sa.String(256), nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
)

triggers = sa.Table(
    "triggers",
    metadata,
    sa.Column("name", sa.String(64), primary_key=True),
    sa.Column(
        "function", sa.String(64),
        sa.ForeignKey("functions.name", ondelete="CASCADE"), nullable=False,
    ),
    sa.Column("qualifier", sa.String(64), nullable=False),
    sa.Column("kind", sa.String(32), nullable=False),
    sa.Column("source", sa.JSON, nullable=False),
    sa.Column("state", sa.String(16), nullable=False),
    sa.Column("description", sa.String(256), nullable=False),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("updated_at", sa.Float, nullable=False),
)

layers = sa.Table(
    "layers",
    metadata,
    sa.Column("name", sa.String(64), primary_key=True),
    # Version numbers are never reused, even after a version is deleted.
    sa.Column("last_version", sa.Integer, nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
)

layer_versions = sa.Table(
    "layer_versions",
    metadata,
    sa.Column(
        "layer", sa.String(64),
        sa.ForeignKey("layers.name", ondelete="CASCADE"), primary_key=True,
    ),
    sa.Column("number", sa.Integer, primary_key=True),
    sa.Column("code_sha256", sa.String(64), nullable=False),
    sa.Column("code_size", sa.BigInteger, nullable=False),
    sa.Column("description", sa.String(256), nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
)

builds = sa.Table(
    "builds",
    metadata,
    sa.Column("id", sa.String(32), primary_key=True),
    # No foreign key: a build runs before the function it is for is saved (a create that
    # fails on it leaves the build, to be read, and no function).
    sa.Column("function", sa.String(64), nullable=True),
    sa.Column("key", sa.String(64), nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("cached", sa.Boolean, nullable=False),
    sa.Column("requirements_sha256", sa.String(64), nullable=False),
    sa.Column("python", sa.String(128), nullable=False),
    # The kept end of the log, and the length of all of it (offsets count from its start).
    sa.Column("log", sa.Text, nullable=False),
    sa.Column("log_size", sa.BigInteger, nullable=False),
    sa.Column("error", sa.Text, nullable=True),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
)

sa.Index("ix_triggers_function", triggers.c.function)
sa.Index("ix_versions_code", versions.c.code_sha256)
sa.Index("ix_functions_code", functions.c.code_sha256)
sa.Index("ix_layer_versions_code", layer_versions.c.code_sha256)
sa.Index("ix_builds_function", builds.c.function, builds.c.created_at)
sa.Index("ix_builds_key", builds.c.key)
