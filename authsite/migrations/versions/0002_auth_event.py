"""Audit log (the auth_event table); byte-order keys on Postgres.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-28
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "auth_event",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=True),
        sa.Column("username", sa.String(length=64), nullable=True),
        sa.Column("username_key", _key_type(64), nullable=True),
        sa.Column("actor_id", sa.Integer(), nullable=True),
        sa.Column("ip", sa.String(length=45), nullable=True),
        sa.Column("user_agent", sa.String(length=512), nullable=True),
        sa.Column("detail", sa.JSON(), nullable=False),
        sa.ForeignKeyConstraint(["user_id"], ["user.id"], ondelete="SET NULL"),
        sa.ForeignKeyConstraint(["actor_id"], ["user.id"], ondelete="SET NULL"),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_auth_event_created_at", "auth_event", ["created_at"])
    op.create_index("ix_auth_event_kind", "auth_event", ["kind"])
    op.create_index("ix_auth_event_user_id", "auth_event", ["user_id"])
    op.create_index("ix_auth_event_username_key", "auth_event", ["username_key"])
    if op.get_bind().dialect.name == "postgresql":
        # Username and email keys compare byte-wise ("C"), so admin prefix
        # searches stay exact and use the index under any database locale.
        for column, length in (("username_key", 64), ("email_key", 254)):
            op.alter_column("user", column, type_=sa.String(length, collation="C"),
                            existing_type=sa.String(length))


def downgrade() -> None:
    op.drop_table("auth_event")
    if op.get_bind().dialect.name == "postgresql":
        for column, length in (("username_key", 64), ("email_key", 254)):
            op.alter_column("user", column, type_=sa.String(length), existing_type=sa.String(length, collation="C"))


def _key_type(length: int) -> sa.String:
    return sa.String(length).with_variant(sa.String(length, collation="C"), "postgresql")
