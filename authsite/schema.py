"""Bringing a database to the newest schema with Alembic, at start or by `run.py db upgrade`."""

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import inspect, text
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncEngine

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"
# Databases made before migrations existed (by create_all) hold exactly this revision.
BASELINE_REVISION = "0001"
# Any fixed number: the Postgres advisory lock that keeps two starting workers
# from migrating at once.
MIGRATION_LOCK_ID = 0x617574687369  # "authsi"


async def upgrade_to_head(engine: AsyncEngine) -> None:
    async with engine.begin() as conn:
        await conn.run_sync(_upgrade)


async def current_revision(engine: AsyncEngine) -> str | None:
    async with engine.connect() as conn:
        return await conn.run_sync(_current)


def head_revision() -> str:
    return ScriptDirectory.from_config(_config(None)).get_current_head()


def _upgrade(connection: Connection) -> None:
    # Take the database's write lock before looking, so two processes starting
    # at once migrate one after the other and the second finds nothing to do.
    if connection.dialect.name == "postgresql":
        connection.execute(text("SELECT pg_advisory_xact_lock(:id)"), {"id": MIGRATION_LOCK_ID})
    elif connection.dialect.name == "sqlite":
        # The sqlite3 module opens no transaction before DDL on its own; this
        # one also makes the whole upgrade all-or-nothing.
        connection.exec_driver_sql("BEGIN IMMEDIATE")
    config = _config(connection)
    if _current(connection) is None and inspect(connection).has_table("user"):
        command.stamp(config, BASELINE_REVISION)
    command.upgrade(config, "head")


def _current(connection: Connection) -> str | None:
    return MigrationContext.configure(connection).get_current_revision()


def _config(connection: Connection | None) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.attributes["connection"] = connection
    return config
