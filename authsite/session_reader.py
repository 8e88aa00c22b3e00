"""The read side of the hot path: the session row for a token hash, with as little in between as we can.

Every request with a session cookie comes here, so this skips the ORM, the engine's pool and,
on SQLite, the hop to a connection thread (issue 6 measured about 4 µs for a point read in
the calling thread against about 300 µs through the async engine). There is no cache: each
read is its own snapshot of the database, so a session ended by any worker or host is refused
on the very next request.

The statement and its value conversions come from sessions.LOOKUP compiled for the engine's
dialect, so the SQL and the column types have one source. Writes never come here.
"""

import asyncio
import json
import sqlite3
import threading
from datetime import UTC, datetime
from typing import Protocol

from sqlalchemy import JSON
from sqlalchemy.engine import URL, Dialect
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.sql import Select
from sqlmodel.sql.sqltypes import UTCDateTime

from authsite.db import POSTGRES_CONNECT_TIMEOUT_SECONDS, POSTGRES_STATEMENT_TIMEOUT_SECONDS, sqlite_file

# A reader on SQLite must never make the event loop wait: in WAL mode reads are not blocked by the
# writer, and in the rare moments they are (recovery), the read goes through the engine instead.
SQLITE_READ_TIMEOUT_SECONDS = 0
POSTGRES_POOL_SIZE = 4
# The whole of one lookup on Postgres: its turn, a connection (maybe a new one) and the read. Past it
# the request is answered 503 rather than kept waiting on a server that stopped answering (issue 12).
POSTGRES_LOOKUP_TIMEOUT_SECONDS = 5


class ReaderUnavailable(Exception):
    """The database did not answer the lookup."""


class SessionReader(Protocol):
    async def find(self, token_hash: str, now: datetime) -> tuple | None: ...

    async def close(self) -> None: ...


class CompiledLookup:
    """`statement` as SQL text for one dialect, with its bind and result conversions prepared once.

    The statement binds exactly `token_hash` and `now`; only the columns whose type needs a
    conversion on this dialect (datetimes, JSON, booleans on SQLite) are converted."""

    def __init__(self, statement: Select, dialect: Dialect):
        compiled = statement.compile(dialect=dialect)
        self.sql = str(compiled)
        names = list(compiled.positiontup or ())
        if sorted(names) != ["now", "token_hash"]:
            raise ValueError(f"the lookup must bind token_hash and now, not {names}")
        self._now_first = names[0] == "now"
        self._token_hash = _bind_processor(compiled.binds["token_hash"].type, dialect)
        self._now = _bind_processor(compiled.binds["now"].type, dialect)
        self._conversions = tuple(
            (index, convert)
            for index, column in enumerate(statement.selected_columns)
            if (convert := _result_processor(column.type, dialect)) is not None
        )

    def params(self, token_hash: str, now: datetime) -> tuple:
        pair = (self._token_hash(token_hash), self._now(now))
        return pair[::-1] if self._now_first else pair

    def row(self, raw) -> tuple:
        values = list(raw)
        for index, convert in self._conversions:
            values[index] = convert(values[index])
        return tuple(values)


# On SQLite, SQLAlchemy stores these datetimes as ISO text without an offset, in UTC. Each request
# binds one and reads two, and converting them directly with datetime's own (C) ISO methods is
# several times cheaper than SQLAlchemy's general processor chains, with the same text and values
# (tests/test_session_reader.py compares them).


def _result_processor(type_, dialect: Dialect):
    if dialect.name == "sqlite" and isinstance(type_, UTCDateTime):
        return _utc_from_sqlite_text
    if dialect.name == "sqlite" and isinstance(type_, JSON):
        return _json_from_sqlite_text
    return type_.dialect_impl(dialect).result_processor(dialect, None)


def _utc_from_sqlite_text(value: str | None) -> datetime | None:
    return None if value is None else datetime.fromisoformat(value).replace(tzinfo=UTC)


def _bind_processor(type_, dialect: Dialect):
    if dialect.name == "sqlite" and isinstance(type_, UTCDateTime):
        return _sqlite_text_from_utc
    return type_.dialect_impl(dialect).bind_processor(dialect) or _unchanged


def _sqlite_text_from_utc(value: datetime | None) -> str | None:
    if value is None:
        return None
    if value.utcoffset() is None:
        raise ValueError("the lookup binds aware datetimes only")  # as SQLModel's UTCDateTime refuses
    return value.astimezone(UTC).replace(tzinfo=None).isoformat(" ", "microseconds")


# A user's scopes are JSON text, and a site has few distinct lists of them: each is parsed once and
# every request gets its own copy of the list (the lookup's caller may change it).
_PARSED_JSON: dict[str, list] = {}
_PARSED_JSON_MAX = 1024


def _json_from_sqlite_text(value: str | None):
    if value is None:
        return None
    parsed = _PARSED_JSON.get(value)
    if parsed is None:
        parsed = json.loads(value)
        if not isinstance(parsed, list):
            return parsed
        if len(_PARSED_JSON) >= _PARSED_JSON_MAX:
            _PARSED_JSON.clear()
        _PARSED_JSON[value] = parsed
    return list(parsed)


def _unchanged(value):
    return value


class EngineReader:
    """The fallback: the same lookup through the async engine (in-memory SQLite, odd URLs)."""

    def __init__(self, engine: AsyncEngine, statement: Select):
        self.engine = engine
        self.statement = statement

    async def find(self, token_hash: str, now: datetime) -> tuple | None:
        async with self.engine.connect() as conn:
            row = (await conn.execute(self.statement, {"token_hash": token_hash, "now": now})).first()
        return tuple(row) if row is not None else None

    async def close(self) -> None:
        pass


class SqliteReader:
    """One plain sqlite3 connection per thread that serves requests (one per worker in practice),
    queried in that thread: a point read by an indexed key costs microseconds, less than a thread hop."""

    def __init__(self, path: str, engine: AsyncEngine, statement: Select):
        self.path = path
        self.lookup = CompiledLookup(statement, engine.dialect)
        self.fallback = EngineReader(engine, statement)
        self._local = threading.local()
        self._opened: list[sqlite3.Connection] = []
        self._lock = threading.Lock()

    def _connection(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            # isolation_level=None: every SELECT is its own read transaction, so it sees the latest
            # commit. check_same_thread=False only so close() may run on another thread.
            conn = sqlite3.connect(self.path, timeout=SQLITE_READ_TIMEOUT_SECONDS, isolation_level=None,
                                   check_same_thread=False)
            conn.execute("PRAGMA query_only=ON")
            self._local.conn = conn
            with self._lock:
                self._opened.append(conn)
        return conn

    async def find(self, token_hash: str, now: datetime) -> tuple | None:
        try:
            raw = self._connection().execute(self.lookup.sql, self.lookup.params(token_hash, now)).fetchone()
        except sqlite3.OperationalError as exc:
            if _is_busy(exc):
                return await self.fallback.find(token_hash, now)
            raise ReaderUnavailable(str(exc)) from exc
        except sqlite3.Error as exc:
            raise ReaderUnavailable(str(exc)) from exc
        return None if raw is None else self.lookup.row(raw)

    async def close(self) -> None:
        with self._lock:
            opened, self._opened = self._opened, []
        for conn in opened:
            conn.close()
        self._local = threading.local()


class PostgresReader:
    """A small asyncpg pool of its own: the lookup is a prepared statement (asyncpg caches it per
    connection) with no ORM, no pre-ping and no greenlet between the request and the row."""

    def __init__(self, url: URL, engine: AsyncEngine, statement: Select):
        self.dsn = url.set(drivername="postgresql").render_as_string(hide_password=False)
        self.lookup = CompiledLookup(statement, engine.dialect)
        self._pool = None
        # Lookups take turns first come, first served. asyncpg's pool lets a newcomer take a
        # connection just freed before a request already waiting for one, which left some page
        # requests waiting 100 ms and more under load (bench: p99 50 ms against a p50 of 3.4).
        self._turns = asyncio.Semaphore(POSTGRES_POOL_SIZE)

    async def open(self) -> "PostgresReader":
        import asyncpg

        self._pool = await asyncpg.create_pool(
            self.dsn, min_size=1, max_size=POSTGRES_POOL_SIZE, init=_json_codec, reset=_nothing_to_reset,
            timeout=POSTGRES_CONNECT_TIMEOUT_SECONDS, command_timeout=POSTGRES_STATEMENT_TIMEOUT_SECONDS,
        )
        return self

    async def find(self, token_hash: str, now: datetime) -> tuple | None:
        import asyncpg

        try:
            async with asyncio.timeout(POSTGRES_LOOKUP_TIMEOUT_SECONDS), self._turns:
                raw = await self._fetch(self.lookup.params(token_hash, now))
        except TimeoutError as exc:  # before OSError, of which it is a kind
            raise ReaderUnavailable(f"no answer within {POSTGRES_LOOKUP_TIMEOUT_SECONDS} s") from exc
        except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError) as exc:
            raise ReaderUnavailable(str(exc)) from exc
        return None if raw is None else self.lookup.row(tuple(raw))

    async def _fetch(self, params: tuple):
        import asyncpg

        conn = await self._pool.acquire()
        try:
            return await conn.fetchrow(self.lookup.sql, *params)
        except asyncpg.PostgresError:
            raise  # the server answered: the connection is fine
        except BaseException:
            # A read cut short (a timeout, a lost connection) leaves the connection waiting on the
            # server, and handing it back would wait as long again: drop it, the pool opens another.
            conn.terminate()
            raise
        finally:
            await self._pool.release(conn)

    async def close(self) -> None:
        if self._pool is not None:
            await self._pool.close()
            self._pool = None


async def _nothing_to_reset(conn) -> None:
    """The pool's default reset is a round trip per release (RESET ALL, UNLISTEN, ...). These
    connections only ever run the one SELECT, outside a transaction, and change no session state."""


async def _json_codec(conn) -> None:
    await conn.set_type_codec("json", encoder=json.dumps, decoder=json.loads, schema="pg_catalog")


async def open_reader(engine: AsyncEngine, statement: Select) -> SessionReader:
    """The fastest reader this database allows."""
    url = engine.url
    backend = url.get_backend_name()
    if path := sqlite_file(url):
        return SqliteReader(path, engine, statement)
    if backend == "postgresql" and url.get_driver_name() == "asyncpg":
        return await PostgresReader(url, engine, statement).open()
    return EngineReader(engine, statement)


def _is_busy(exc: sqlite3.OperationalError) -> bool:
    code = getattr(exc, "sqlite_errorcode", None)
    return code in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED) or "locked" in str(exc)
