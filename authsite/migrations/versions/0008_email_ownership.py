"""Email ownership (issue 15): when each account's address was proved to be its owner's.

Addresses stored before stay unconfirmed: nobody ever proved them. Under the default
AUTHSITE_EMAIL_VERIFICATION=optional that only shows on the account page.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-07
"""

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Not in a batch: a batch copy of `user` on SQLite would cascade away every session (see 0006).
    op.add_column("user", sa.Column("email_confirmed_at", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    op.drop_column("user", "email_confirmed_at")
