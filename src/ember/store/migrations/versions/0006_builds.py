"""builds: dependency builds of requirements.txt, with their logs

Revision ID: 0006
Revises: 0005
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "builds",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("function", sa.String(64), nullable=True),
        sa.Column("key", sa.String(64), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("cached", sa.Boolean, nullable=False),
        sa.Column("requirements_sha256", sa.String(64), nullable=False),
        sa.Column("python", sa.String(128), nullable=False),
        sa.Column("log", sa.Text, nullable=False),
        sa.Column("log_size", sa.BigInteger, nullable=False),
        sa.Column("error", sa.Text, nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
    )
    op.create_index("ix_builds_function", "builds", ["function", "created_at"])
    op.create_index("ix_builds_key", "builds", ["key"])


def downgrade() -> None:
    op.drop_table("builds")
