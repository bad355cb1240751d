"""layers: named layers and their immutable numbered versions

Revision ID: 0005
Revises: 0004
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "layers",
        sa.Column("name", sa.String(64), primary_key=True),
        sa.Column("last_version", sa.Integer, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_table(
        "layer_versions",
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
    op.create_index("ix_layer_versions_code", "layer_versions", ["code_sha256"])


def downgrade() -> None:
    op.drop_table("layer_versions")
    op.drop_table("layers")
