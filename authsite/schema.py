"""Bringing a database to the newest schema with Alembic, at start or by `run.py db upgrade`.

Alembic is imported only when a migration is due: a server starting on an up-to-date database
(every start but the first after an upgrade) learns that from one SELECT and never pays the
10 MB that importing Alembic costs each worker (bench/RESULTS.md)."""

from pathlib import Path

from sqlalchemy import inspect, text
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncEngine

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"
# Databases made before migrations existed (by create_all) hold exactly this revision.
BASELINE_REVISION = "0001"
# Any fixed number: the Postgres advisory lock that keeps two starting workers
# from migrating at once.
MIGRATION_LOCK_ID = 0x617574687369  # "authsi"
# The newest file in migrations/versions; tests/test_migrations.py checks it against Alembic.
HEAD_REVISION = "0009"


async def upgrade_to_head(engine: AsyncEngine) -> None:
    async with engine.connect() as conn:
        if await conn.run_sync(_recorded_revision) == HEAD_REVISION:
            return
    async with engine.begin() as conn:
        await conn.run_sync(_upgrade)


def _recorded_revision(connection: Connection) -> str | None:
    """The revision in alembic_version, read without Alembic; None if there is none."""
    if not inspect(connection).has_table("alembic_version"):
        return None
    return connection.execute(text("SELECT version_num FROM alembic_version")).scalar()


async def current_revision(engine: AsyncEngine) -> str | None:
    async with engine.connect() as conn:
        return await conn.run_sync(_current)


def head_revision() -> str:
    from alembic.script import ScriptDirectory

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
    from alembic import command

    config = _config(connection)
    if _current(connection) is None and inspect(connection).has_table("user"):
        command.stamp(config, BASELINE_REVISION)
    command.upgrade(config, "head")


def _current(connection: Connection) -> str | None:
    from alembic.runtime.migration import MigrationContext

    return MigrationContext.configure(connection).get_current_revision()


def _config(connection: Connection | None):
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.attributes["connection"] = connection
    return config
