"""api keys (hashed) and the audit of control-plane changes

Revision ID: 0011
Revises: 0010
"""

import hashlib

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "api_keys",
        sa.Column("name", sa.String(64), primary_key=True),
        sa.Column("key_id", sa.String(32), nullable=False, unique=True),
        sa.Column("secret_sha256", sa.String(64), nullable=False),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("functions", sa.JSON, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=True),
    )
    op.create_table(
        "audit_log",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("key", sa.String(64), nullable=False),
        sa.Column("action", sa.String(256), nullable=False),
        sa.Column("resource", sa.String(1024), nullable=False),
        sa.Column("status", sa.Integer, nullable=False),
    )
    op.create_index("ix_audit_log_at", "audit_log", ["at"])
    # HTTP triggers' keys were kept as given: keep their digests instead.
    conn = op.get_bind()
    triggers = sa.table("triggers", sa.column("name", sa.String),
                        sa.column("source", sa.JSON))
    for name, source in conn.execute(sa.select(triggers.c.name, triggers.c.source)).all():
        key = (source or {}).get("api_key")
        if isinstance(key, str) and not key.startswith("sha256:"):
            digest = "sha256:" + hashlib.sha256(key.encode()).hexdigest()
            conn.execute(triggers.update().where(triggers.c.name == name)
                         .values(source={**source, "api_key": digest}))


def downgrade() -> None:
    op.drop_table("audit_log")
    op.drop_table("api_keys")
