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
    # Null, as is the qualifier, when the target is "events" (the workflow event bus).
    sa.Column(
        "function", sa.String(64),
        sa.ForeignKey("functions.name", ondelete="CASCADE"), nullable=True,
    ),
    sa.Column("qualifier", sa.String(64), nullable=True),
    sa.Column("kind", sa.String(32), nullable=False),
    sa.Column("source", sa.JSON, nullable=False),
    sa.Column("state", sa.String(16), nullable=False),
    sa.Column("description", sa.String(256), nullable=False),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("updated_at", sa.Float, nullable=False),
    sa.Column("target", sa.String(16), nullable=False, server_default="function"),
    # The workflow a trigger with target "workflow" starts (no foreign key: deleting a
    # workflow that triggers target is refused unless forced, and then they fail each event).
    sa.Column("workflow", sa.String(64), nullable=True),
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

# -- workflows -------------------------------------------------------------------------------

workflows = sa.Table(
    "workflows",
    metadata,
    sa.Column("name", sa.String(64), primary_key=True),
    sa.Column("last_revision", sa.Integer, nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
)

# Each deploy of a workflow is a new immutable revision; executions pin the one they began on.
workflow_revisions = sa.Table(
    "workflow_revisions",
    metadata,
    sa.Column(
        "workflow",
        sa.String(64),
        sa.ForeignKey("workflows.name", ondelete="CASCADE"),
        primary_key=True,
    ),
    sa.Column("revision", sa.Integer, primary_key=True),
    sa.Column("namespace", sa.String(128), nullable=False),
    sa.Column("version", sa.String(64), nullable=False),
    sa.Column("document", sa.JSON, nullable=False),
    sa.Column("sha256", sa.String(64), nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
)

# An execution: its row holds what the API shows and a snapshot of the state machine's
# state as of journal entry ``snapshot_seq``; the journal holds every completion after it.
executions = sa.Table(
    "executions",
    metadata,
    sa.Column("id", sa.String(32), primary_key=True),
    # No foreign key: a forced delete of a workflow cancels its executions first, and the
    # records of finished ones stay readable until they are purged.
    sa.Column("workflow", sa.String(64), nullable=False),
    sa.Column("revision", sa.Integer, nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("input", sa.JSON, nullable=True),
    sa.Column("output", sa.JSON, nullable=True),
    sa.Column("error", sa.JSON, nullable=True),
    sa.Column("idempotency_key", sa.String(256), nullable=True),
    # A sub-workflow's parent execution and the action there that waits for it.
    sa.Column("parent", sa.String(32), nullable=True),
    sa.Column("parent_action", sa.String(1024), nullable=True),
    sa.Column("state", sa.JSON, nullable=False),
    sa.Column("snapshot_seq", sa.Integer, nullable=False),
    sa.Column("seq", sa.Integer, nullable=False),
    # Function steps started again after a crash because their result was not recorded.
    sa.Column("reruns", sa.Integer, nullable=False, server_default="0"),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
)

execution_journal = sa.Table(
    "execution_journal",
    metadata,
    sa.Column(
        "execution",
        sa.String(32),
        sa.ForeignKey("executions.id", ondelete="CASCADE"),
        primary_key=True,
    ),
    sa.Column("seq", sa.Integer, primary_key=True),
    # The completion (machine.Completion as JSON) and the time it was applied at.
    sa.Column("entry", sa.JSON, nullable=False),
)

# Events the bus received, kept for the retention window so that an execution reaching its
# listen after the event arrived still gets it; and a schedule's partial ``on`` joins.
workflow_events = sa.Table(
    "workflow_events",
    metadata,
    sa.Column("key", sa.String(512), primary_key=True),  # source + id
    sa.Column("event", sa.JSON, nullable=False),
    sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
    # Set once an execution or a schedule took it: no longer offered, but its key is kept
    # for the retention window, so that the same event delivered again is a duplicate.
    sa.Column("taken_at", sa.DateTime(timezone=True), nullable=True),
)

# A large step result (over 256 KiB), stored once per execution however many journal entries
# and snapshots refer to it (``ember.workflows.values``).
workflow_blobs = sa.Table(
    "workflow_blobs",
    metadata,
    sa.Column(
        "execution",
        sa.String(32),
        sa.ForeignKey("executions.id", ondelete="CASCADE"),
        primary_key=True,
    ),
    sa.Column("sha256", sa.String(64), primary_key=True),
    sa.Column("data", sa.LargeBinary, nullable=False),
)

workflow_schedules = sa.Table(
    "workflow_schedules",
    metadata,
    sa.Column(
        "workflow",
        sa.String(64),
        sa.ForeignKey("workflows.name", ondelete="CASCADE"),
        primary_key=True,
    ),
    sa.Column("state", sa.JSON, nullable=False),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
)

# A secret's value, encrypted with the master key, which is never stored here
# (``ember.secrets``): AES-GCM with a random nonce per value, in the row's ``format``.
secrets = sa.Table(
    "secrets",
    metadata,
    sa.Column("name", sa.String(64), primary_key=True),
    sa.Column("ciphertext", sa.LargeBinary, nullable=False),
    sa.Column("nonce", sa.LargeBinary, nullable=False),
    sa.Column("format", sa.Integer, nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
)

# -- API keys and the audit ------------------------------------------------------------------

api_keys = sa.Table(
    "api_keys",
    metadata,
    sa.Column("name", sa.String(64), primary_key=True),
    sa.Column("key_id", sa.String(32), nullable=False, unique=True),
    # SHA-256 of the secret part; the secret itself is never stored.
    sa.Column("secret_sha256", sa.String(64), nullable=False),
    sa.Column("role", sa.String(16), nullable=False),
    sa.Column("functions", sa.JSON, nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("expires_at", sa.DateTime(timezone=True), nullable=True),
)

audit_log = sa.Table(
    "audit_log",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("key", sa.String(64), nullable=False),
    sa.Column("action", sa.String(256), nullable=False),
    sa.Column("resource", sa.String(1024), nullable=False),
    sa.Column("status", sa.Integer, nullable=False),
)

sa.Index("ix_triggers_function", triggers.c.function)
sa.Index("ix_versions_code", versions.c.code_sha256)
sa.Index("ix_functions_code", functions.c.code_sha256)
sa.Index("ix_layer_versions_code", layer_versions.c.code_sha256)
sa.Index("ix_builds_function", builds.c.function, builds.c.created_at)
sa.Index("ix_builds_key", builds.c.key)
sa.Index("ix_executions_workflow", executions.c.workflow, executions.c.created_at)
sa.Index("ix_executions_status", executions.c.status)
sa.Index("ix_executions_key", executions.c.workflow, executions.c.idempotency_key)
sa.Index("ix_workflow_events_received", workflow_events.c.received_at)
sa.Index("ix_audit_log_at", audit_log.c.at)

provisioned = sa.Table(
    "provisioned",
    metadata,
    sa.Column(
        "function", sa.String(64),
        sa.ForeignKey("functions.name", ondelete="CASCADE"), primary_key=True,
    ),
    sa.Column("qualifier", sa.String(64), primary_key=True),
    sa.Column("config", sa.JSON, nullable=False),
    # The count the last PUT or scheduled action set, and the wall time through which
    # scheduled actions have been applied.
    sa.Column("target", sa.Integer, nullable=False),
    sa.Column("applied_until", sa.Float, nullable=False),
    sa.Column("last_action", sa.String(256), nullable=True),
    sa.Column("updated_at", sa.Float, nullable=False),
)

console_sessions = sa.Table(
    "console_sessions",
    metadata,
    # SHA-256 of the session cookie's value; the value itself is never stored.
    sa.Column("id_sha256", sa.String(64), primary_key=True),
    # The key it logged in with, found again by id (``KeyService.by_reference``): a revoked
    # or expired key ends its sessions.
    sa.Column("key_ref", sa.String(64), nullable=False),
    sa.Column("key_name", sa.String(64), nullable=False),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("expires_at", sa.Float, nullable=False),
    sa.Index("ix_console_sessions_expires", "expires_at"),
)

artifacts = sa.Table(
    "artifacts",
    metadata,
    # Code and layer zips by the SHA-256 of their bytes, where every node sharing this
    # database fetches them (the database artifact store); each node unpacks its own copy.
    sa.Column("sha256", sa.String(64), primary_key=True),
    sa.Column("size", sa.BigInteger, nullable=False),
    sa.Column("data", sa.LargeBinary, nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
)

dependencies = sa.Table(
    "dependencies",
    metadata,
    # A finished dependency build (its key names the requirements and the Python) stored as
    # an artifact, for the other nodes to fetch instead of running pip again.
    sa.Column("key", sa.String(64), primary_key=True),
    sa.Column("sha256", sa.String(64), nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
)

nodes = sa.Table(
    "nodes",
    metadata,
    sa.Column("id", sa.String(64), primary_key=True),
    sa.Column("address", sa.String(256), nullable=False),
    sa.Column("version", sa.String(32), nullable=False),
    sa.Column("state", sa.String(16), nullable=False),
    sa.Column("started_at", sa.Float, nullable=False),
    sa.Column("heartbeat_at", sa.Float, nullable=False),
    sa.Column("capacity", sa.JSON, nullable=False),
    sa.Column("load", sa.JSON, nullable=False),
)
