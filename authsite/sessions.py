"""Server-side sessions: start, find by token, slide, end, purge. No HTTP here."""

from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import cached_property
from typing import NamedTuple

from sqlalchemy import Connection, bindparam, delete, exists, insert, update
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlmodel import select
from sqlmodel.ext.asyncio.session import AsyncSession

from authsite import rules, tokens
from authsite.db import Database
from authsite.models import Session, User, utcnow
from authsite.session_reader import SessionReader

# Sliding the idle expiry costs a write; do it at most this often per session.
MAX_TOUCH_INTERVAL = timedelta(seconds=60)
# Lifetimes below this are allowed but worth a line in the log at start (a typo of minutes?).
SHORT_LIFETIME = timedelta(seconds=60)
USER_AGENT_MAX_CHARS = 512

_session = Session.__table__
_user = User.__table__

# The hot path: one indexed lookup by token hash, joined to its active user,
# built once; session_reader compiles it once per dialect and each request only binds its values.
LOOKUP = (
    select(
        _session.c.id,
        _session.c.user_id,
        _session.c.created_at,
        _session.c.last_seen_at,
        _session.c.remember,
        _user.c.username,
        _user.c.scopes,
        _user.c.email,
        _user.c.first_name,
        _user.c.last_name,
        _user.c.mfa_enabled,
    )
    .join(_user, _user.c.id == _session.c.user_id)
    .where(
        _session.c.token_hash == bindparam("token_hash"),
        _session.c.expires_at > bindparam("now"),
        _user.c.is_active.is_(True),
    )
)


@dataclass(frozen=True)
class Lifetimes:
    idle: timedelta
    max: timedelta
    remember: timedelta

    @classmethod
    def from_seconds(cls, *, idle: int, max: int, remember: int) -> "Lifetimes":
        return cls(timedelta(seconds=idle), timedelta(seconds=max), timedelta(seconds=remember))

    @cached_property  # read on every request
    def touch_interval(self) -> timedelta:
        return min(MAX_TOUCH_INTERVAL, self.idle / 2)

    def short_ones(self) -> list[str]:
        """A warning for each lifetime under SHORT_LIFETIME (allowed, but rarely meant)."""
        named = (("SESSION_IDLE", self.idle), ("SESSION_MAX", self.max), ("REMEMBER", self.remember))
        return [
            f"AUTHSITE_{name}_SECONDS={length.total_seconds():g}: sessions end after so few seconds"
            for name, length in named if length < SHORT_LIFETIME
        ]

    def expiry(self, *, created_at: datetime, now: datetime, remember: bool) -> datetime:
        """Idle expiry slides with use but never passes the absolute limit."""
        if remember:
            return created_at + self.remember
        return min(now + self.idle, created_at + self.max)


class ActiveSession(NamedTuple):
    """What one lookup tells the middleware about the visitor (the columns of LOOKUP, in order,
    then the token hash). A named tuple: built on every request, so built cheaply."""

    id: int
    user_id: int
    created_at: datetime
    last_seen_at: datetime
    remember: bool
    username: str
    scopes: list[str]
    email: str | None
    first_name: str | None
    last_name: str | None
    mfa_enabled: bool
    token_hash: str


# Starting a session, built once (building a statement costs several times running it): the
# row is inserted only if the account still has the password hash the login was checked against.
# The account `user_id` is active and still has the password hash `checked_hash` (also what
# authsite/logins.py stamps and rehashes on).
STILL_CHECKED = (
    (_user.c.id == bindparam("user_id")) & (_user.c.password_hash == bindparam("checked_hash"))
    & _user.c.is_active.is_(True)
)
_STILL_VALID = (
    select(_user.c.id).where(STILL_CHECKED)
    .with_for_update(read=True)  # FOR SHARE on Postgres; SQLite serialises writes anyway
)
_NEW_ROW = ("token_hash", "user_id", "created_at", "last_seen_at", "expires_at", "ip", "user_agent", "remember",
            "authenticated_at")
_START = insert(_session).from_select(
    _NEW_ROW, select(*(bindparam(name, type_=_session.c[name].type) for name in _NEW_ROW)).where(exists(_STILL_VALID))
)
_END_ONE = delete(_session).where(_session.c.id == bindparam("session_id"))
END_USER_SESSIONS = delete(_session).where(_session.c.user_id == bindparam("user_id"))
_END_REPLACED = delete(_session).where(_session.c.token_hash == bindparam("replaced_hash"))
# Read only by the rare sensitive request (sudo mode), not on every request with the session lookup.
_PROVED = select(_session.c.authenticated_at).where(_session.c.id == bindparam("session_id"))
_SLIDE = (
    update(_session).where(_session.c.id == bindparam("session_id"))
    .values(last_seen_at=bindparam("seen"), expires_at=bindparam("until"))
)


def start_session(
    conn: Connection,
    *,
    user_id: int,
    password_hash: str,
    lifetimes: Lifetimes,
    remember: bool = False,
    ip: str | None = None,
    user_agent: str | None = None,
    replaces: str | None = None,
    authenticated_at: datetime | None = None,
) -> str | None:
    """A new session row; returns the token for the cookie (never stored), or None if the
    password the login was checked against (`password_hash`) has changed since, or the
    account was deactivated. `replaces` is the token hash of a session this one ends (the
    browser's previous one): a hash, never an id, since SQLite gives a deleted row's id to the next
    row, and a login finished minutes later must not end someone else's session.
    `authenticated_at`: when the new session last proved who it is, if not now (a password change,
    made with the password alone, keeps the sudo time of the session it was made from).

    The row is written only if the account still has that hash, in one statement that
    waits for a password change in progress: a login racing a change never leaves a
    session opened with the old password. The caller commits."""
    now = utcnow()
    if replaces is not None:
        # Before the insert: SQLite may give the new row the id the old one had.
        conn.execute(_END_REPLACED, {"replaced_hash": replaces})
    token = tokens.new_token()
    row = {
        "token_hash": tokens.hash_token(token),
        "user_id": user_id,
        "checked_hash": password_hash,
        "created_at": now,
        "last_seen_at": now,
        "expires_at": lifetimes.expiry(created_at=now, now=now, remember=remember),
        "ip": ip,
        "user_agent": (user_agent or "")[:USER_AGENT_MAX_CHARS] or None,
        "remember": remember,
        "authenticated_at": authenticated_at or now,
    }
    return token if conn.execute(_START, row).rowcount == 1 else None


async def get_user_by_session_token(
    *, reader: SessionReader, database: Database, token: str, lifetimes: Lifetimes
) -> ActiveSession | None:
    """The live session behind a cookie's token: one indexed read, and a write at most once per
    touch interval to slide the idle expiry."""
    if not tokens.is_well_formed(token):
        return None
    token_hash = tokens.hash_token(token)
    now = utcnow()
    row = await reader.find(token_hash, now)
    if row is None:
        return None
    session = ActiveSession(*row, token_hash)
    if now - session.last_seen_at >= lifetimes.touch_interval:
        await _touch(database, session, now, lifetimes)
    return session


async def _touch(database: Database, session: ActiveSession, now: datetime, lifetimes: Lifetimes) -> None:
    until = lifetimes.expiry(created_at=session.created_at, now=now, remember=session.remember)
    await database.run(lambda conn: conn.execute(_SLIDE, {"session_id": session.id, "seen": now, "until": until}))


_REAUTHENTICATED = (
    update(_session).where(_session.c.id == bindparam("session_id"))
    .values(token_hash=bindparam("new_hash"), authenticated_at=bindparam("now"))
)


def reauthenticate(conn: Connection, *, session_id: int, now: datetime) -> str | None:
    """The session's holder proved who they are again (/auth/confirm): sudo mode restarts, under a
    new token (returned for the cookie), as at any authentication: whoever copied the old one
    before does not hold the session that now may make sensitive changes. None if it has ended."""
    token = tokens.new_token()
    changed = conn.execute(_REAUTHENTICATED, {"session_id": session_id, "new_hash": tokens.hash_token(token), "now": now})
    return token if changed.rowcount == 1 else None


def proved_at(conn: Connection, *, session_id: int) -> datetime | None:
    """When the session last proved who it is (its login or a confirmation); None if it has ended."""
    return conn.execute(_PROVED, {"session_id": session_id}).scalar()


def end_session(conn: Connection, *, session_id: int) -> bool:
    """Logout: the row goes, so the token is refused by every worker from the next request on.
    True if this call deleted it (of racing logouts of one session, exactly one)."""
    return conn.execute(_END_ONE, {"session_id": session_id}).rowcount == 1


async def end_own_session(*, db: AsyncSession, user_id: int, session_id: int) -> bool:
    """End one of `user_id`'s sessions; False if they have no session with that id."""
    if not rules.is_row_id(session_id):
        return False
    result = await db.exec(delete(Session).where(Session.id == session_id, Session.user_id == user_id))
    await db.commit()
    return result.rowcount > 0


async def end_user_sessions(
    *, db: AsyncSession, user_id: int, keep_session_id: int | None = None, commit: bool = True
) -> None:
    statement = delete(Session).where(Session.user_id == user_id)
    if keep_session_id is not None:
        statement = statement.where(Session.id != keep_session_id)
    await db.exec(statement)
    if commit:
        await db.commit()


async def end_all_sessions(*, db: AsyncSession) -> int:
    """Log everyone out (after a breach, say); returns how many sessions ended."""
    result = await db.exec(delete(Session))
    await db.commit()
    return result.rowcount or 0


async def purge_expired(*, engine: AsyncEngine) -> int:
    """Delete expired rows (uses the expires_at index); run by a background task."""
    async with engine.begin() as conn:
        result = await conn.execute(delete(_session).where(_session.c.expires_at <= utcnow()))
    return result.rowcount or 0


async def list_user_sessions(*, db: AsyncSession, user_id: int) -> list[Session]:
    """The user's live sessions, most recently used first."""
    statement = (
        select(Session)
        .where(Session.user_id == user_id, Session.expires_at > utcnow())
        .order_by(Session.last_seen_at.desc(), Session.id.desc())
    )
    return list((await db.exec(statement)).all())
