"""triggers: event sources bound to a function and qualifier

Revision ID: 0004
Revises: 0003
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "triggers",
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
    op.create_index("ix_triggers_function", "triggers", ["function"])


def downgrade() -> None:
    op.drop_table("triggers")
