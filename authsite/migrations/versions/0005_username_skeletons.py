"""Fill user.username_skeleton (added by 0004) for the accounts made before it (issue 12).

The oldest account keeps a skeleton it shares with a later one; the later ones stay NULL: they
keep working, and no new name can look like any of them.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-01
"""

import sqlalchemy as sa
from alembic import op

from authsite import rules

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    connection = op.get_bind()
    user = sa.table("user", sa.column("id", sa.Integer), sa.column("username", sa.String),
                    sa.column("username_skeleton", sa.String))
    taken = set(connection.execute(sa.select(user.c.username_skeleton).where(user.c.username_skeleton.is_not(None)))
                .scalars())
    rows = connection.execute(sa.select(user.c.id, user.c.username).where(user.c.username_skeleton.is_(None))
                              .order_by(user.c.id)).all()
    for user_id, username in rows:
        skeleton = rules.username_skeleton(username)
        if skeleton in taken or len(skeleton) > rules.MAX_SKELETON_CHARS:
            continue
        taken.add(skeleton)
        connection.execute(sa.update(user).where(user.c.id == user_id).values(username_skeleton=skeleton))


def downgrade() -> None:
    user = sa.table("user", sa.column("username_skeleton", sa.String))
    op.execute(sa.update(user).values(username_skeleton=None))
