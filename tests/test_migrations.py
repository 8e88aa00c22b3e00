"""Upgrading a database without losing a row: Alembic migrations run at start and
by `run.py db upgrade`, from the first released schema and from a database made
before migrations existed, on SQLite and Postgres alike."""

import asyncio
import functools
import os
import subprocess
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from fastapi.testclient import TestClient
from sqlalchemy import MetaData, Table, inspect, select, text
from sqlmodel import SQLModel

import authsite.models  # noqa: F401  (puts the tables on SQLModel.metadata, which the schema is compared with)
from authsite import create_app, schema, tokens
from authsite.db import Database
from authsite.passwords import CONTEXT
from support import PASSWORD, log_in

REPO = Path(__file__).resolve().parents[1]
FIRST_REVISION = "0001"
HEAD = ScriptDirectory(str(schema.MIGRATIONS_DIR)).get_current_head()
BOB_PASSWORD = "another long phrase 9"
START_TIMEOUT_SECONDS = 60
APPS_STARTING_AT_ONCE = 3

# Starts one app (the same start as a run.py worker) once the go file appears,
# so several of them reach the migration at the same moment.
START_WHEN_TOLD = """
import asyncio, sys, time
from pathlib import Path
from authsite import Settings
from authsite.app import AuthSite

go = Path(sys.argv[1])
site = AuthSite(Settings())

async def start_and_stop():
    try:
        await site.start()
    finally:
        await site.stop()

print("ready", flush=True)
while not go.exists():
    time.sleep(0.001)
asyncio.run(start_and_stop())
"""


# --- reading and writing the database the way the old code did, outside the app


def on_connection(url: str, work):
    """`work(sync_connection)` inside one transaction on a fresh engine; returns its result."""

    async def run():
        db = Database(url)
        try:
            async with db.engine.begin() as conn:
                return await conn.run_sync(work)
        finally:
            await db.dispose()

    return asyncio.run(run())


def alembic_upgrade(revision: str):
    def upgrade(connection):
        config = Config()
        config.set_main_option("script_location", str(schema.MIGRATIONS_DIR))
        config.attributes["connection"] = connection
        command.upgrade(config, revision)

    return upgrade


def create_all_without_migrations(connection) -> None:
    # What the code did before Alembic: create_all of the first release's tables (user,
    # session, password_reset), with no alembic_version. Migration 0001 is exactly that
    # schema (tests below compare it with the models of its day), so build it and forget it.
    alembic_upgrade(FIRST_REVISION)(connection)
    connection.execute(text("DROP TABLE alembic_version"))


def insert_rows(connection, table_name: str, rows: list[dict]) -> None:
    # Reflected, not the current models: these rows are written as the first
    # release's schema holds them, whatever the models become later.
    table = Table(table_name, MetaData(), autoload_with=connection)
    connection.execute(table.insert(), rows)


def user_ids(connection) -> dict[str, int]:
    table = Table("user", MetaData(), autoload_with=connection)
    return {row.username: row.id for row in connection.execute(select(table.c.username, table.c.id))}


def all_rows(url: str, table_name: str) -> list[dict]:
    def read(connection):
        table = Table(table_name, MetaData(), autoload_with=connection)
        return [dict(row._mapping) for row in connection.execute(select(table).order_by(table.c.id))]

    return on_connection(url, read)


def old_values(url: str, table_name: str, old_database) -> list[dict]:
    """The rows now, cut to the columns they had before the upgrade (later migrations add some)."""
    before = old_database["rows"][table_name]
    return [{name: row[name] for name in old} for row, old in zip(all_rows(url, table_name), before)]


def current_revision(url: str) -> str | None:
    return on_connection(url, lambda connection: MigrationContext.configure(connection).get_current_revision())


def alembic_versions(url: str) -> list[str]:
    query = text("SELECT version_num FROM alembic_version")
    return on_connection(url, lambda connection: connection.execute(query).scalars().all())


def table_names(url: str) -> set[str]:
    return set(on_connection(url, lambda connection: inspect(connection).get_table_names()))


def schema_layout(url: str) -> dict:
    def look(connection):
        inspector = inspect(connection)
        return {
            name: ([c["name"] for c in inspector.get_columns(name)], inspector.get_indexes(name))
            for name in inspector.get_table_names()
        }

    return on_connection(url, look)


def schema_differences(url: str) -> list:
    def compare(connection):
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        return compare_metadata(context, SQLModel.metadata)

    return on_connection(url, compare)


# --- an old database, filled


@functools.cache
def password_hash(password: str) -> str:
    return CONTEXT.hash(password)


def fill(connection, session_token: str) -> None:
    now = datetime.now(timezone.utc).replace(microsecond=0)
    hours = timedelta(hours=1)
    insert_rows(connection, "user", [
        {"username": "alice", "username_key": "alice", "first_name": "Alice", "last_name": "Liddell",
         "email": "Alice@Example.com", "email_key": "alice@example.com", "password_hash": password_hash(PASSWORD),
         "scopes": ["authenticated", "admin"], "is_active": True, "info": {"team": "ops"},
         "created_at": now - 48 * hours, "last_login_at": now - hours},
        {"username": "bob", "username_key": "bob", "first_name": None, "last_name": None,
         "email": None, "email_key": None, "password_hash": password_hash(BOB_PASSWORD),
         "scopes": ["authenticated"], "is_active": True, "info": {},
         "created_at": now - 24 * hours, "last_login_at": None},
        {"username": "carol", "username_key": "carol", "first_name": None, "last_name": "C",
         "email": "carol@example.com", "email_key": "carol@example.com", "password_hash": password_hash(PASSWORD),
         "scopes": ["authenticated", "super"], "is_active": False, "info": {"note": "left"},
         "created_at": now - 72 * hours, "last_login_at": None},
    ])
    ids = user_ids(connection)
    insert_rows(connection, "session", [
        {"token_hash": tokens.hash_token(session_token), "user_id": ids["alice"], "created_at": now - hours,
         "last_seen_at": now, "expires_at": now + 24 * hours, "ip": "192.0.2.10",
         "user_agent": "Mozilla/5.0 (X11; Linux x86_64) Firefox/133.0", "remember": True},
        {"token_hash": tokens.hash_token(tokens.new_token()), "user_id": ids["bob"], "created_at": now,
         "last_seen_at": now, "expires_at": now + hours, "ip": "2001:db8::2", "user_agent": None,
         "remember": False},
    ])


def start_app_once(settings) -> None:
    with TestClient(create_app(settings)):
        pass


@pytest.fixture(params=["at_first_revision", "made_before_migrations"])
def old_database(request, database_url):
    """A database from before the upgrade, with users and sessions in it.

    at_first_revision: brought by Alembic to 0001 only. made_before_migrations:
    created by create_all, as authsite did before it had migrations."""
    token = tokens.new_token()
    if request.param == "at_first_revision":
        on_connection(database_url, alembic_upgrade(FIRST_REVISION))
        assert current_revision(database_url) == FIRST_REVISION
    else:
        on_connection(database_url, create_all_without_migrations)
        assert current_revision(database_url) is None
    on_connection(database_url, lambda connection: fill(connection, token))
    assert "auth_event" not in table_names(database_url)
    rows = {name: all_rows(database_url, name) for name in ("user", "session")}
    return {"token": token, "rows": rows}


@pytest.fixture
def upgraded_client(old_database, make_settings):
    """The old database started by today's app, as a browser sees it."""
    with TestClient(create_app(make_settings()), follow_redirects=False) as test_client:
        yield test_client


# --- upgrading an old database at start


@pytest.mark.parametrize("table", ["user", "session"])
def test_upgrading_keeps_every_row(old_database, upgraded_client, database_url, table):
    assert old_values(database_url, table, old_database) == old_database["rows"][table]


def test_upgrading_brings_the_database_to_the_newest_migration(old_database, upgraded_client, database_url):
    assert current_revision(database_url) == HEAD
    assert "auth_event" in table_names(database_url)


def test_a_session_cookie_from_before_the_upgrade_still_logs_in(old_database, upgraded_client):
    upgraded_client.cookies.set("session", old_database["token"])

    me = upgraded_client.get("/api/me")

    assert me.status_code == 200
    assert me.json()["username"] == "alice"
    assert set(me.json()["scopes"]) == {"authenticated", "admin"}


def test_a_password_from_before_the_upgrade_still_logs_in(old_database, upgraded_client):
    response = log_in(upgraded_client, "bob", BOB_PASSWORD)

    assert response.status_code == 303, response.text
    assert upgraded_client.get("/api/me").json()["username"] == "bob"


def test_a_deactivated_user_from_before_the_upgrade_stays_locked_out(old_database, upgraded_client):
    response = log_in(upgraded_client, "carol", PASSWORD)

    assert response.status_code == 401


def test_a_login_after_the_upgrade_is_recorded_in_the_new_audit_log(old_database, upgraded_client, database_url):
    log_in(upgraded_client, "bob", BOB_PASSWORD)

    events = all_rows(database_url, "auth_event")

    bob = next(user for user in old_database["rows"]["user"] if user["username"] == "bob")
    assert [(event["kind"], event["user_id"]) for event in events] == [("login", bob["id"])]


# --- the schema the migrations build is the schema the models describe


@pytest.mark.parametrize("origin", ["empty", "at_first_revision", "made_before_migrations"])
def test_after_upgrading_the_schema_matches_the_models_exactly(make_settings, database_url, origin):
    if origin == "at_first_revision":
        on_connection(database_url, alembic_upgrade(FIRST_REVISION))
    elif origin == "made_before_migrations":
        on_connection(database_url, create_all_without_migrations)

    start_app_once(make_settings())

    assert schema_differences(database_url) == []


def test_starting_twice_changes_nothing(make_settings, database_url):
    settings = make_settings()
    with TestClient(create_app(settings), follow_redirects=False) as first_start:
        # A row the second start must leave alone.
        first_start.post("/api/auth/login", json={"username": "nobody", "password": "not this one"})
    layout, events = schema_layout(database_url), all_rows(database_url, "auth_event")

    start_app_once(settings)

    assert schema_layout(database_url) == layout
    assert all_rows(database_url, "auth_event") == events
    assert alembic_versions(database_url) == [HEAD]


def test_apps_starting_at_once_on_one_database_all_come_up(tmp_path, database_url):
    # Workers or servers started together race to migrate a fresh database;
    # the losers must wait for the winner, not fail.
    env = {name: value for name, value in os.environ.items() if not name.startswith("AUTHSITE_")}
    env |= {
        "AUTHSITE_DATA_DIR": str(tmp_path / "data"),
        "AUTHSITE_DATABASE_URL": database_url,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")])),
    }
    go = tmp_path / "go"
    apps = [
        subprocess.Popen(
            [sys.executable, "-c", START_WHEN_TOLD, str(go)],
            cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        for _ in range(APPS_STARTING_AT_ONCE)
    ]
    try:
        for app in apps:
            app.stdout.readline()  # "ready": authsite imported, about to start
        go.touch()
        outcomes = [app.communicate(timeout=START_TIMEOUT_SECONDS) for app in apps]
    finally:
        for app in apps:
            if app.poll() is None:
                app.kill()
                app.wait()

    for app, (_, errors) in zip(apps, outcomes):
        assert app.returncode == 0, [line for line in errors.splitlines() if "Error" in line][-1:]
    assert current_revision(database_url) == HEAD


# --- by hand: run.py db current / db upgrade


def test_db_current_on_a_fresh_database_says_it_is_empty_and_behind(run_cli):
    result = run_cli("db", "current")

    assert result.returncode == 0, result.stderr
    assert "empty" in result.stdout
    assert "behind" in result.stdout
    assert HEAD in result.stdout


def test_db_current_on_an_old_database_names_its_revision(run_cli, database_url):
    on_connection(database_url, alembic_upgrade(FIRST_REVISION))

    result = run_cli("db", "current")

    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(FIRST_REVISION)
    assert "behind" in result.stdout


def test_db_current_does_not_upgrade(run_cli, database_url):
    on_connection(database_url, alembic_upgrade(FIRST_REVISION))

    run_cli("db", "current")

    assert current_revision(database_url) == FIRST_REVISION


def test_db_upgrade_brings_the_database_to_the_newest_migration(run_cli, database_url):
    upgraded = run_cli("db", "upgrade")
    current = run_cli("db", "current")

    assert upgraded.returncode == 0, upgraded.stderr
    assert current_revision(database_url) == HEAD
    assert current.stdout.startswith(HEAD)
    assert "up to date" in current.stdout


def test_db_upgrade_keeps_the_rows_of_an_old_database(old_database, run_cli, database_url):
    result = run_cli("db", "upgrade")

    assert result.returncode == 0, result.stderr
    assert current_revision(database_url) == HEAD
    for table in ("user", "session"):
        assert old_values(database_url, table, old_database) == old_database["rows"][table]


def test_the_head_revision_authsite_checks_at_start_is_alembics_head():
    assert schema.HEAD_REVISION == HEAD
