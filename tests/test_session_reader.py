"""The session reader: the hot path's one read, straight to the database, never cached."""

import asyncio
import sqlite3
from datetime import UTC, datetime, timedelta, timezone

import pytest
from sqlalchemy import text
from sqlalchemy.dialects.sqlite import dialect as sqlite_dialect
from sqlalchemy.ext.asyncio import create_async_engine

from authsite import sessions
from authsite.models import utcnow
from authsite.session_reader import (
    POSTGRES_POOL_SIZE, CompiledLookup, EngineReader, PostgresReader, ReaderUnavailable, SqliteReader, open_reader,
)
from support import log_in


@pytest.fixture
def whoami(client):
    def who() -> str:
        response = client.get("/api/me")
        return response.json()["username"] if response.status_code == 200 else ""

    return who


def test_the_active_session_names_the_lookups_columns_in_their_order():
    # get_user_by_session_token builds ActiveSession(*row, token_hash) from the reader's row.
    columns = [column.name for column in sessions.LOOKUP.selected_columns]
    assert list(sessions.ActiveSession._fields) == [*columns, "token_hash"]


@pytest.mark.sqlite_only
def test_a_sqlite_file_is_read_in_the_calling_thread(client, site):
    assert isinstance(site.reader, SqliteReader)


@pytest.mark.postgres_only
def test_postgres_is_read_through_its_own_asyncpg_pool(client, site):
    assert isinstance(site.reader, PostgresReader)


@pytest.mark.parametrize("url", ["sqlite+aiosqlite://", "sqlite+aiosqlite:///:memory:"])
def test_an_in_memory_database_is_read_through_the_engine(url):
    async def reader_type():
        engine = create_async_engine(url)
        try:
            return type(await open_reader(engine, sessions.LOOKUP))
        finally:
            await engine.dispose()

    import asyncio

    assert asyncio.run(reader_type()) is EngineReader


def test_a_session_deleted_behind_the_apps_back_is_refused_on_the_next_request(client, site, user, whoami):
    log_in(client)
    assert whoami() == "alice"

    async def delete_every_session():
        async with site.database.engine.begin() as conn:
            await conn.execute(text("DELETE FROM session"))

    client.portal.call(delete_every_session)
    assert whoami() == ""


def test_a_user_deactivated_behind_the_apps_back_is_refused_on_the_next_request(client, site, user, whoami):
    log_in(client)

    async def deactivate():
        async with site.database.engine.begin() as conn:
            await conn.execute(text('UPDATE "user" SET is_active = false'))

    client.portal.call(deactivate)
    assert whoami() == ""


def test_scopes_granted_behind_the_apps_back_count_on_the_next_request(client, site, user):
    log_in(client)

    async def grant_admin():
        async with site.database.engine.begin() as conn:
            await conn.execute(text("""UPDATE "user" SET scopes = '["authenticated", "admin"]'"""))

    client.portal.call(grant_admin)
    assert client.get("/api/me").json()["scopes"] == ["authenticated", "admin"]


class LockedConnection:
    def execute(self, *args):
        raise sqlite3.OperationalError("database is locked")


@pytest.mark.sqlite_only
def test_a_locked_sqlite_file_is_read_through_the_engine_instead(client, site, user, whoami, monkeypatch):
    log_in(client)
    monkeypatch.setattr(site.reader, "_connection", lambda: LockedConnection())
    assert whoami() == "alice"


def test_a_database_that_does_not_answer_gets_a_503_that_says_so(client, site, user, monkeypatch):
    log_in(client)

    async def unavailable(token_hash, now):
        raise ReaderUnavailable("connection refused")

    monkeypatch.setattr(site.reader, "find", unavailable)
    response = client.get("/api/me")
    assert response.status_code == 503
    assert "Try again in a moment" in response.text


@pytest.mark.sqlite_only
def test_the_reader_never_writes(client, site, user):
    log_in(client)
    connection = site.reader._connection()
    with pytest.raises(sqlite3.OperationalError, match="readonly|read-only|query_only"):
        connection.execute("DELETE FROM session")


def test_closing_the_site_closes_its_reader(app, user):
    from fastapi.testclient import TestClient

    with TestClient(app) as client:
        log_in(client)
        site = app.state.authsite
        reader = site.reader
        assert client.get("/api/me").status_code == 200
    assert site.reader is None
    if isinstance(reader, SqliteReader):
        assert reader._opened == []


def test_the_reader_returns_exactly_what_the_engine_returns(client, site, user):
    log_in(client)

    async def both_rows():
        async with site.database.engine.connect() as conn:
            token_hash = (await conn.execute(text("SELECT token_hash FROM session"))).scalar_one()
        from authsite.models import utcnow

        now = utcnow()
        return await site.reader.find(token_hash, now), await EngineReader(site.database.engine, sessions.LOOKUP).find(token_hash, now)

    direct, through_engine = client.portal.call(both_rows)
    assert direct is not None
    assert direct == through_engine
    assert direct[2].tzinfo is not None and direct[2].utcoffset().total_seconds() == 0


class HeldPool:
    """Stands in for asyncpg's pool: each lookup waits inside until the test lets it go."""

    def __init__(self):
        self.entered: list[str] = []
        self.inside = 0
        self.most_inside = 0
        self.go = asyncio.Event()

    async def acquire(self):
        return self  # the reader acquires a connection, reads on it, and releases it

    async def release(self, connection):
        pass

    async def fetchrow(self, sql, token_hash, now):
        self.entered.append(token_hash)
        self.inside += 1
        self.most_inside = max(self.most_inside, self.inside)
        await self.go.wait()
        self.inside -= 1
        return None


def test_postgres_lookups_take_turns_first_come_first_served():
    # asyncpg's pool lets a newcomer take a freed connection ahead of requests already
    # waiting; before the reader queued lookups itself, that cost some pages 100 ms and more.
    async def scenario():
        engine = create_async_engine("postgresql+asyncpg://nobody@127.0.0.1:1/none")  # never connects
        reader = PostgresReader(engine.url, engine, sessions.LOOKUP)
        reader._pool = pool = HeldPool()
        arrivals = arrivals_in_order(3 * POSTGRES_POOL_SIZE)
        lookups = []
        for token_hash in arrivals:
            lookups.append(asyncio.create_task(reader.find(token_hash, utcnow())))
            await asyncio.sleep(0)
        while len(pool.entered) < POSTGRES_POOL_SIZE:
            await asyncio.sleep(0)
        assert pool.entered == arrivals[:POSTGRES_POOL_SIZE]
        pool.go.set()
        await asyncio.gather(*lookups)
        await engine.dispose()
        return pool

    pool = asyncio.run(scenario())
    assert pool.entered == arrivals_in_order(3 * POSTGRES_POOL_SIZE)
    assert pool.most_inside == POSTGRES_POOL_SIZE


def arrivals_in_order(count: int) -> list[str]:
    return [f"{i:064x}" for i in range(count)]


@pytest.mark.parametrize("moment", [
    datetime(2026, 12, 7, 22, 30, 5, 123456, tzinfo=UTC),
    datetime(2026, 12, 7, 22, 30, 5, tzinfo=UTC),  # no microseconds: still six digits, as SQLAlchemy writes
    datetime(2026, 12, 8, 0, 30, 5, 7, tzinfo=timezone(timedelta(hours=2))),  # stored as its UTC time
    datetime(999, 1, 2, 3, 4, 5, tzinfo=UTC),
])
def test_the_sqlite_reader_binds_a_moment_as_the_text_sqlalchemy_stores(moment):
    dialect = sqlite_dialect()
    compiled = sessions.LOOKUP.compile(dialect=dialect)
    sqlalchemy_bind = compiled.binds["now"].type.dialect_impl(dialect).bind_processor(dialect)
    sqlalchemy_text = sqlalchemy_bind(compiled.binds["now"].type.process_bind_param(moment, dialect))

    assert CompiledLookup(sessions.LOOKUP, dialect).params("hash", moment) == ("hash", sqlalchemy_text)


def test_the_sqlite_reader_refuses_a_moment_without_a_time_zone():
    with pytest.raises(ValueError):
        CompiledLookup(sessions.LOOKUP, sqlite_dialect()).params("hash", datetime(2026, 12, 7, 22, 30))


def test_each_read_of_the_same_scopes_gets_a_list_of_its_own():
    lookup = CompiledLookup(sessions.LOOKUP, sqlite_dialect())
    raw = (1, 2, "2026-12-07 22:30:05.000000", "2026-12-07 22:30:05.000000", 0, "alice",
           '["authenticated", "admin"]', None, None, None, 0)
    first = lookup.row(raw)
    first[6].append("super")  # a caller that changes its copy

    assert lookup.row(raw)[6] == ["authenticated", "admin"]
