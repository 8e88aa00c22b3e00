"""`db upgrade` and `db current`: the database schema's migration."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from authsite.cli.program import command_line
from authsite.cli.runner import run_with_database

if TYPE_CHECKING:
    from authsite.config import Settings
    from authsite.db import Database
    from authsite.passwords import PasswordHasher


def db_upgrade(settings: Settings, args: argparse.Namespace) -> int:
    from authsite import schema

    async def upgrade(db: Database, hasher: PasswordHasher) -> None:
        print(f"database is at migration {await schema.current_revision(db.engine)} (newest)")

    run_with_database(settings, upgrade)  # opening the database upgrades it
    return 0


def db_current(settings: Settings, args: argparse.Namespace) -> int:
    from authsite import schema

    async def show(db: Database, hasher: PasswordHasher) -> None:
        current, head = await schema.current_revision(db.engine), schema.head_revision()
        state = "up to date" if current == head else f"behind: run `{command_line(args.prog)} db upgrade` to reach {head}"
        print(f"{current or 'empty'} ({state})")

    run_with_database(settings, show, upgrade=False)
    return 0
