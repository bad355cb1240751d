"""trigger workflow: a trigger with target workflow names the workflow its events start

Revision ID: 0009
Revises: 0008
"""

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("triggers") as batch:
        batch.add_column(sa.Column("workflow", sa.String(64), nullable=True))


def downgrade() -> None:
    # 0008 knows no target workflow: such triggers cannot be kept.
    op.execute("DELETE FROM triggers WHERE target = 'workflow'")
    with op.batch_alter_table("triggers") as batch:
        batch.drop_column("workflow")
