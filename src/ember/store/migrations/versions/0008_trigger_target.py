"""trigger target: a trigger delivers to its function or to the workflow event bus

Revision ID: 0008
Revises: 0007
"""

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Batch mode: SQLite cannot drop NOT NULL in place, so the table is copied there.
    with op.batch_alter_table("triggers") as batch:
        batch.add_column(sa.Column("target", sa.String(16), nullable=False,
                                   server_default="function"))
        batch.alter_column("function", existing_type=sa.String(64), nullable=True)
        batch.alter_column("qualifier", existing_type=sa.String(64), nullable=True)


def downgrade() -> None:
    op.execute("DELETE FROM triggers WHERE target <> 'function'")
    with op.batch_alter_table("triggers") as batch:
        batch.alter_column("qualifier", existing_type=sa.String(64), nullable=False)
        batch.alter_column("function", existing_type=sa.String(64), nullable=False)
        batch.drop_column("target")
