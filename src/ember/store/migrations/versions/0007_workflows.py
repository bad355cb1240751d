"""workflows: revisions, executions with their journal, retained events, schedules

Revision ID: 0007
Revises: 0006
"""

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "workflows",
        sa.Column("name", sa.String(64), primary_key=True),
        sa.Column("last_revision", sa.Integer, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_table(
        "workflow_revisions",
        sa.Column("workflow", sa.String(64),
                  sa.ForeignKey("workflows.name", ondelete="CASCADE"), primary_key=True),
        sa.Column("revision", sa.Integer, primary_key=True),
        sa.Column("namespace", sa.String(128), nullable=False),
        sa.Column("version", sa.String(64), nullable=False),
        sa.Column("document", sa.JSON, nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_table(
        "executions",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("workflow", sa.String(64), nullable=False),
        sa.Column("revision", sa.Integer, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("input", sa.JSON, nullable=True),
        sa.Column("output", sa.JSON, nullable=True),
        sa.Column("error", sa.JSON, nullable=True),
        sa.Column("idempotency_key", sa.String(256), nullable=True),
        sa.Column("parent", sa.String(32), nullable=True),
        sa.Column("parent_action", sa.String(1024), nullable=True),
        sa.Column("state", sa.JSON, nullable=False),
        sa.Column("snapshot_seq", sa.Integer, nullable=False),
        sa.Column("seq", sa.Integer, nullable=False),
        sa.Column("reruns", sa.Integer, nullable=False, server_default="0"),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
    )
    op.create_index("ix_executions_workflow", "executions", ["workflow", "created_at"])
    op.create_index("ix_executions_status", "executions", ["status"])
    op.create_index("ix_executions_key", "executions", ["workflow", "idempotency_key"])
    op.create_table(
        "execution_journal",
        sa.Column("execution", sa.String(32),
                  sa.ForeignKey("executions.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("seq", sa.Integer, primary_key=True),
        sa.Column("entry", sa.JSON, nullable=False),
    )
    op.create_table(
        "workflow_blobs",
        sa.Column("execution", sa.String(32),
                  sa.ForeignKey("executions.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("sha256", sa.String(64), primary_key=True),
        sa.Column("data", sa.LargeBinary, nullable=False),
    )
    op.create_table(
        "workflow_events",
        sa.Column("key", sa.String(512), primary_key=True),
        sa.Column("event", sa.JSON, nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("taken_at", sa.DateTime(timezone=True), nullable=True),
    )
    op.create_index("ix_workflow_events_received", "workflow_events", ["received_at"])
    op.create_table(
        "workflow_schedules",
        sa.Column("workflow", sa.String(64),
                  sa.ForeignKey("workflows.name", ondelete="CASCADE"), primary_key=True),
        sa.Column("state", sa.JSON, nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    )


def downgrade() -> None:
    for table in ("workflow_schedules", "workflow_events", "workflow_blobs",
                  "execution_journal", "executions",
                  "workflow_revisions", "workflows"):
        op.drop_table(table)
