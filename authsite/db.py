import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import TypeVar

from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import DisconnectionError, InvalidatePoolError
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker, create_async_engine
from sqlmodel.ext.asyncio.session import AsyncSession

try:
    from sqlalchemy.util import await_  # SQLAlchemy 2.1
except ImportError:
    from sqlalchemy.util import await_only as await_  # 2.0

from authsite import schema
from authsite.files import make_private_file

SQLITE_BUSY_TIMEOUT_MS = 5000
# How long a request waits on Postgres at each step before it is answered 503 with Retry-After.
# authsite's statements are point reads and writes by an index (milliseconds on a healthy server);
# a server that stops answering (paused, swapping, cut off by the network) must not keep requests
# and connections waiting without end (issue 12: no answer in 130 s). A few seconds each, so that
# even the longest chain (a connection to wait for, to open, and one statement) stays near 15 s.
POSTGRES_CONNECT_TIMEOUT_SECONDS = 5  # a new connection: TCP, TLS, startup and authentication
POSTGRES_STATEMENT_TIMEOUT_SECONDS = 5  # asyncpg's command_timeout: each statement's round trip
POSTGRES_POOL_TIMEOUT_SECONDS = 5  # a free connection of the engine's pool, when all are busy
# What a visitor is told (with a 503) when the database is busy past that or out of reach.
DATABASE_DOWN_MESSAGE = "The database is busy or not answering. Try again in a moment."

T = TypeVar("T")


class Database:
    """One async engine and the session factory the domain code uses, and `run` for short
    units of work written as plain statements on a connection (logins, rate limits, audit)."""

    def __init__(self, url: str):
        self.url = make_url(url)
        self.engine = _create_engine(url)
        self.sessionmaker = async_sessionmaker(
            self.engine, class_=AsyncSession, expire_on_commit=False
        )
        self._writer = _SqliteWriter(self.url) if sqlite_file(self.url) else None
        # What `run` writes through (for instrumentation: tests count the statements).
        self.run_engine: Engine = self._writer.engine if self._writer else self.engine.sync_engine

    @property
    def is_sqlite(self) -> bool:
        return self.url.get_backend_name() == "sqlite"

    async def create_schema(self) -> None:
        """Create or upgrade the tables to the newest migration.

        On Postgres through an engine of its own without the per-statement timeout: a migration
        may rewrite a large table, and a second worker waits on the first one's migration lock."""
        if self.is_sqlite:
            await schema.upgrade_to_head(self.engine)
            return
        migrating = _create_engine(self.url, statement_timeout=None)
        try:
            await schema.upgrade_to_head(migrating)
        finally:
            await migrating.dispose()

    async def session(self) -> AsyncIterator[AsyncSession]:
        async with self.sessionmaker() as db:
            yield db

    async def run(self, work: Callable[[Connection], T]) -> T:
        """`work(connection)`, committed when it returns (it may commit part way) and rolled back
        if it raises, in one trip: the statements run back to back, with no await between them.

        Through aiosqlite every statement is a hop to its connection thread and back, a few
        hundred microseconds of CPU each; a login made of six such transactions cost more than
        its password hash's share (issue 6). So on a SQLite file the whole unit runs in one hop
        to a writer thread of our own with a plain sqlite3 connection (SQLite has one writer at
        a time anyway); elsewhere it runs on the async engine's connection as is."""
        if self._writer is not None:
            return await self._writer.run(work)
        async with self.engine.connect() as conn:
            result = await conn.run_sync(work)
            await conn.commit()
        return result

    async def dispose(self) -> None:
        if self._writer is not None:
            self._writer.close()
        await self.engine.dispose()


class _SqliteWriter:
    """One thread with one sync connection to the same SQLite file."""

    def __init__(self, url: URL):
        self.engine: Engine = create_engine(url.set(drivername="sqlite"), pool_size=1, max_overflow=0,
                                            connect_args={"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000})
        event.listen(self.engine, "connect", _sqlite_pragmas)
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="authsite-db")

    async def run(self, work: Callable[[Connection], T]) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._thread, self._in_thread, work)

    def _in_thread(self, work: Callable[[Connection], T]) -> T:
        with self.engine.connect() as conn:
            result = work(conn)
            conn.commit()
        return result

    def close(self) -> None:
        self._thread.shutdown(wait=True)  # lets work already handed over finish; idempotent
        self.engine.dispose()


AUTOCOMMIT = "AUTOCOMMIT"


@contextmanager
def each_statement_committed(conn: Connection) -> Iterator[Connection]:
    """The block's statements each committed as it runs (autocommit), where no transaction is open.

    On Postgres a transaction is three round trips for one statement (BEGIN, the statement, COMMIT),
    and each round trip a turn of the event loop that serves pages: a login's rate-limit rows, its
    counts and its audit event need no transaction around each of them (issue 18). Inside an open
    transaction this changes nothing: switching would end it. Nested blocks share the outer one."""
    if conn.get_execution_options().get("isolation_level") == AUTOCOMMIT or conn.in_transaction():
        yield conn
        return
    conn.execution_options(isolation_level=AUTOCOMMIT)
    try:
        yield conn
    except BaseException:
        _leave_autocommit(conn, failed=True)
        raise
    _leave_autocommit(conn, failed=False)


def _leave_autocommit(conn: Connection, *, failed: bool) -> None:
    if conn.invalidated or conn.closed:
        # The connection was lost in the block (or ended by a timeout, see _timed_out_is_gone): it
        # is discarded, never pooled again. Switching its level back would open a new one first,
        # waiting on a database that is just then failing to answer. Rolling back sends nothing
        # then: it only clears SQLAlchemy's record of the lost transaction.
        with contextlib.suppress(Exception):
            conn.rollback()
        return
    try:
        if conn.in_transaction():
            # Sends nothing (every statement committed already): it ends SQLAlchemy's own record of one.
            if failed:
                conn.rollback()
            else:
                conn.commit()
        conn.execution_options(isolation_level=conn.default_isolation_level)
    except Exception:
        with contextlib.suppress(Exception):
            conn.invalidate()  # never back in the pool still committing every statement
        if not failed:
            raise  # else the block's own error is the one to tell


def sqlite_file(url: URL) -> str | None:
    """The path of a SQLite database in a plain file (not in memory, not a URI), else None."""
    if url.get_backend_name() != "sqlite":
        return None
    path = url.database
    if not path or path == ":memory:" or path.startswith("file:") or "uri" in url.query:
        return None
    return path


def _create_engine(url: str | URL, *, statement_timeout: float | None = POSTGRES_STATEMENT_TIMEOUT_SECONDS) -> AsyncEngine:
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite":
        on_asyncpg = parsed.get_driver_name() == "asyncpg"
        engine = create_async_engine(
            parsed, pool_pre_ping=not on_asyncpg, pool_timeout=POSTGRES_POOL_TIMEOUT_SECONDS,
            connect_args=_postgres_timeouts(parsed, statement_timeout),
        )
        event.listen(engine.sync_engine, "handle_error", _timed_out_is_gone)
        if on_asyncpg:
            event.listen(engine.sync_engine.pool, "connect", _opened)
            event.listen(engine.sync_engine.pool, "checkout", _ping_in_one_round_trip)
        return engine
    if path := sqlite_file(parsed):
        make_private_file(Path(path))
    engine = create_async_engine(url, connect_args={"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000})
    event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
    return engine


def _postgres_timeouts(url: URL, statement_timeout: float | None) -> dict:
    """asyncpg's own bounds (a timeout raises the builtin TimeoutError); other drivers keep theirs."""
    if url.get_driver_name() != "asyncpg":
        return {}
    return {"timeout": POSTGRES_CONNECT_TIMEOUT_SECONDS, "command_timeout": statement_timeout}


def _ping_in_one_round_trip(_dbapi_connection, record, _proxy) -> None:
    """Every connection taken from the pool is checked first, so a Postgres restart or a dropped
    connection costs a reconnect, not a failed request (issue 12). SQLAlchemy's own pre-ping on
    asyncpg is three round trips (BEGIN, an empty query, ROLLBACK); a login takes two connections,
    and each round trip is a turn of the event loop that serves pages (issue 18). One query in the
    simple protocol (no statement prepared) is the same check. A connection just opened is not
    checked, as the pre-ping does not: the pool would give up after a second failed check with an
    error that is no database error (a 500, where a database that does not answer gets a 503)."""
    if record.info.pop(_FRESH, False):
        return
    connection = record.driver_connection
    try:
        await_(connection.execute("SELECT 1"))
    except Exception as exc:  # any error at all: a dropped connection can leave asyncpg's state odd
        # This connection is no use: the pool opens a fresh one. One that the server closed (a
        # restart) means the others opened before now are gone too: the pool drops them as well.
        gone = InvalidatePoolError if connection.is_closed() else DisconnectionError
        raise gone(f"the pooled connection failed its check: {exc!r}") from exc


def _opened(_dbapi_connection, record) -> None:
    record.info[_FRESH] = True


_FRESH = "authsite_fresh"


def _timed_out_is_gone(context) -> None:
    # A statement that got no answer in time leaves its connection waiting on the server (for the
    # answer, then for a cancel request): rolling it back would wait as long again. Treat it as a
    # lost connection instead: SQLAlchemy drops it at once, and checks the pool's others before reuse.
    if isinstance(context.original_exception, TimeoutError):
        context.is_disconnect = True


def _sqlite_pragmas(dbapi_connection, _record) -> None:
    # WAL lets readers run beside the one writer; the busy timeout makes a
    # second writer wait instead of failing with "database is locked".
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()
