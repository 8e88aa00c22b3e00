"""Rate limits kept in the database: the throttle_hit table.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-28
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "throttle_hit",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("bucket", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_throttle_hit_bucket_created_at", "throttle_hit", ["bucket", "created_at"])
    op.create_index("ix_throttle_hit_created_at", "throttle_hit", ["created_at"])


def downgrade() -> None:
    op.drop_table("throttle_hit")
