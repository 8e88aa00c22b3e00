"""Hardening (issue 12): reserved login attempts, who made a reset link, confusable usernames.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-01
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def _key_type(length: int):
    return sa.String(length).with_variant(sa.String(length, collation="C"), "postgresql")


def upgrade() -> None:
    with op.batch_alter_table("throttle_hit") as batch:
        batch.add_column(sa.Column("pending", sa.Boolean(), nullable=False, server_default=sa.false()))
    with op.batch_alter_table("password_reset") as batch:
        batch.add_column(sa.Column("issued_by", sa.Integer(), nullable=True))
        batch.create_foreign_key("fk_password_reset_issued_by_user", "user", ["issued_by"], ["id"], ondelete="CASCADE")
    with op.batch_alter_table("user") as batch:
        batch.add_column(sa.Column("username_skeleton", _key_type(128), nullable=True))
        batch.create_index("ix_user_username_skeleton", ["username_skeleton"], unique=True)


def downgrade() -> None:
    with op.batch_alter_table("user") as batch:
        batch.drop_index("ix_user_username_skeleton")
        batch.drop_column("username_skeleton")
    with op.batch_alter_table("password_reset") as batch:
        batch.drop_constraint("fk_password_reset_issued_by_user", type_="foreignkey")
        batch.drop_column("issued_by")
    with op.batch_alter_table("throttle_hit") as batch:
        batch.drop_column("pending")
