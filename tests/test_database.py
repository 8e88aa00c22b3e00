"""The database: engine settings, schema created at start (never at import), the
contract's tables and the constraints that keep them consistent."""

import asyncio
import os
import subprocess
import sys

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import delete, func, inspect, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import create_async_engine

from authsite import create_app, rules
from authsite.models import Session, User

USER_COLUMNS = {
    "username", "first_name", "last_name", "email", "password_hash",
    "scopes", "is_active", "info", "created_at", "last_login_at",
}
SESSION_COLUMNS = {
    "token_hash", "user_id", "created_at", "last_seen_at", "expires_at", "ip", "user_agent", "remember",
}


@pytest.fixture
def in_app_loop(client, site):
    """Run `await work(conn)` on a connection of the app's own engine, on the app's loop."""

    def run(work):
        async def call():
            async with site.database.engine.connect() as conn:
                return await work(conn)

        return client.portal.call(call)

    return run


@pytest.fixture
def inspect_schema(in_app_loop):
    def run(look):
        return in_app_loop(lambda conn: conn.run_sync(lambda sync_conn: look(inspect(sync_conn))))

    return run


def table_names(url: str) -> set[str]:
    async def names():
        engine = create_async_engine(url)
        try:
            async with engine.connect() as conn:
                return set(await conn.run_sync(lambda sync_conn: inspect(sync_conn).get_table_names()))
        finally:
            await engine.dispose()

    return asyncio.run(names())


def is_unique_on(inspector, table: str, column: str) -> bool:
    indexes = [i for i in inspector.get_indexes(table) if i["unique"]]
    constraints = inspector.get_unique_constraints(table)
    return any(entry["column_names"] == [column] for entry in [*indexes, *constraints])


def is_indexed(inspector, table: str, column: str) -> bool:
    return any(index["column_names"][:1] == [column] for index in inspector.get_indexes(table))


@pytest.mark.sqlite_only
@pytest.mark.parametrize(("pragma", "expected"), [("journal_mode", "wal"), ("foreign_keys", 1)])
def test_sqlite_connections_use_wal_and_foreign_keys(in_app_loop, pragma, expected):
    value = in_app_loop(lambda conn: conn.exec_driver_sql(f"PRAGMA {pragma}")).scalar()

    assert value == expected


@pytest.mark.sqlite_only
def test_sqlite_connections_wait_for_a_busy_writer(in_app_loop):
    assert in_app_loop(lambda conn: conn.exec_driver_sql("PRAGMA busy_timeout")).scalar() > 0


def test_importing_authsite_touches_nothing(tmp_path):
    # A fresh interpreter, so every module really is imported here for the first time.
    # Every module but the two that are programs, not imports: `python -m
    # authsite` (serves) and the migration scripts (run by Alembic).
    code = (
        "import importlib, pkgutil, authsite\n"
        "for module in pkgutil.walk_packages(authsite.__path__, 'authsite.'):\n"
        "    if module.name.endswith('__main__') or module.name.startswith('authsite.migrations'):\n"
        "        continue\n"
        "    importlib.import_module(module.name)\n"
    )
    env = {name: value for name, value in os.environ.items() if not name.startswith("AUTHSITE_")}

    result = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60
    )

    assert result.returncode == 0, result.stderr
    assert list(tmp_path.iterdir()) == []


def test_building_the_app_creates_no_database(settings, database_url, is_postgres):
    create_app(settings)

    assert not settings.data_dir.exists()
    if is_postgres:
        assert table_names(database_url) == set()


def test_starting_the_app_creates_the_database_and_tables(settings, database_url, is_postgres):
    with TestClient(create_app(settings)):
        if not is_postgres:
            assert (settings.data_dir / "authsite.db").is_file()

    assert {"user", "session"} <= table_names(database_url)


def test_the_user_table_has_the_contract_columns(inspect_schema):
    columns = inspect_schema(lambda inspector: {c["name"] for c in inspector.get_columns("user")})

    assert USER_COLUMNS <= columns


def test_the_session_table_has_the_contract_columns(inspect_schema):
    columns = inspect_schema(lambda inspector: {c["name"] for c in inspector.get_columns("session")})

    assert SESSION_COLUMNS <= columns


def test_session_token_hashes_are_unique_and_expiry_is_indexed(inspect_schema):
    # Every authenticated request looks a session up by token hash; the purge scans by expiry.
    assert inspect_schema(lambda inspector: is_unique_on(inspector, "session", "token_hash"))
    assert inspect_schema(lambda inspector: is_indexed(inspector, "session", "expires_at"))


def test_usernames_differing_only_in_case_or_width_clash_in_the_database(user, run_db):
    # The application checks too, but only the unique index holds under simultaneous sign-ups.
    twin = "ＡＬＩＣＥ"
    assert rules.username_key(twin) == user.username_key

    async def insert_twin(db):
        db.add(User(username=twin, username_key=rules.username_key(twin), password_hash="x"))
        await db.commit()

    with pytest.raises(IntegrityError):
        run_db(insert_twin)


def test_deleting_a_user_deletes_their_sessions(logged_in_client, user, run_db):
    async def count_sessions(db):
        return (await db.exec(select(func.count()).select_from(Session).where(Session.user_id == user.id))).one()[0]

    async def delete_user(db):
        await db.exec(delete(User).where(User.id == user.id))
        await db.commit()

    assert run_db(count_sessions) == 1
    run_db(delete_user)

    assert run_db(count_sessions) == 0
    assert logged_in_client.get("/api/me").status_code == 401
