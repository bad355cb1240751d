"""provisioned capacity per function qualifier: target, schedules, target tracking

Revision ID: 0012
Revises: 0011
"""

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "provisioned",
        sa.Column("function", sa.String(64),
                  sa.ForeignKey("functions.name", ondelete="CASCADE"), primary_key=True),
        sa.Column("qualifier", sa.String(64), primary_key=True),
        sa.Column("config", sa.JSON, nullable=False),
        sa.Column("target", sa.Integer, nullable=False),
        sa.Column("applied_until", sa.Float, nullable=False),
        sa.Column("last_action", sa.String(256), nullable=True),
        sa.Column("updated_at", sa.Float, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("provisioned")
