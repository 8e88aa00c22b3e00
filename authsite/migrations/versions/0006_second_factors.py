"""Second factors and sudo mode (issue 13): authenticator apps, recovery codes, pending steps,
when a session last proved who it is, and whether an account has a second factor.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-06
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def _user_id() -> sa.Column:
    return sa.Column("user_id", sa.Integer(), sa.ForeignKey("user.id", ondelete="CASCADE"), nullable=False)


def upgrade() -> None:
    # Not in a batch: on SQLite a batch may copy the table, and dropping the old `user` table
    # would delete every row that references it (sessions, links) through ON DELETE CASCADE.
    op.add_column("user", sa.Column("mfa_enabled", sa.Boolean(), nullable=False, server_default=sa.false()))

    # Sessions that exist already proved who they are when they were made.
    with op.batch_alter_table("session") as batch:
        batch.add_column(sa.Column("authenticated_at", sa.DateTime(timezone=True), nullable=True))
    session = sa.table("session", sa.column("created_at"), sa.column("authenticated_at"))
    op.execute(session.update().values(authenticated_at=session.c.created_at))
    with op.batch_alter_table("session") as batch:
        batch.alter_column("authenticated_at", existing_type=sa.DateTime(timezone=True), nullable=False)

    op.create_table(
        "totp_authenticator",
        sa.Column("id", sa.Integer(), nullable=False),
        _user_id(),
        sa.Column("secret_sealed", sa.String(length=255), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_used_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_step", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_totp_authenticator_user_id", "totp_authenticator", ["user_id"], unique=True)

    op.create_table(
        "recovery_code",
        sa.Column("id", sa.Integer(), nullable=False),
        _user_id(),
        sa.Column("code_hash", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("user_id", "code_hash", name="uq_recovery_code_user_id_code_hash"),
    )
    op.create_index("ix_recovery_code_user_id", "recovery_code", ["user_id"])

    op.create_table(
        "pending_step",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("purpose", sa.String(length=32), nullable=False),
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        _user_id(),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("failures", sa.Integer(), nullable=False),
        sa.Column("data", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_pending_step_token_hash", "pending_step", ["token_hash"], unique=True)
    op.create_index("ix_pending_step_user_id", "pending_step", ["user_id"])
    op.create_index("ix_pending_step_expires_at", "pending_step", ["expires_at"])


def downgrade() -> None:
    op.drop_table("pending_step")
    op.drop_table("recovery_code")
    op.drop_table("totp_authenticator")
    with op.batch_alter_table("session") as batch:
        batch.drop_column("authenticated_at")
    op.drop_column("user", "mfa_enabled")
