"""A login: the rate limits, the password check, the session row and the audit event. No HTTP here.

The database work comes in two units around the password hash, each one trip to the database
(`Database.run`): before the hash, the rate limits and the account's row; after it, the session
row or the failure counted, then the audit event. A login used to take six ORM transactions,
6 ms of CPU on top of its hash, which held back both login throughput and page latency during
a login storm (issue 6, bench/RESULTS.md). No connection is held while hashing.
"""

from dataclasses import dataclass
from datetime import datetime
from functools import partial

from sqlalchemy import Connection, bindparam, select, update

from authsite import events, rules, sessions, throttle
from authsite.db import Database
from authsite.events import Kind
from authsite.models import User, utcnow
from authsite.passwords import PasswordHasher
from authsite.throttle import Limits

_user = User.__table__

# Built once: building a statement costs several times what running it does.
_BY_NAME = select(_user).where(_user.c.username_key == bindparam("key"))
_STAMP = update(_user).where(sessions.STILL_CHECKED).values(last_login_at=bindparam("now"))
_REHASH = update(_user).where(sessions.STILL_CHECKED).values(password_hash=bindparam("new_hash"))


@dataclass(frozen=True)
class LoginRequest:
    """What the visitor sent, and what the audit log and the session row keep of where from."""

    username: str
    password: str
    remember: bool = False
    ip: str | None = None
    user_agent: str | None = None
    via: str = "form"
    replaces: int | None = None  # the browser's current session, ended by this login

    def __repr__(self) -> str:  # never the password, not even in a traceback
        return f"LoginRequest(username={self.username!r}, via={self.via!r})"


@dataclass(frozen=True)
class LoginResult:
    user: User | None = None
    token: str | None = None  # for the session cookie, when the login succeeded
    retry_after: int | None = None  # set when throttled: answer 429


class Logins:
    def __init__(self, *, database: Database, hasher: PasswordHasher, limits: Limits,
                 lifetimes: sessions.Lifetimes):
        self.database, self.hasher, self.limits, self.lifetimes = database, hasher, limits, lifetimes

    async def log_in(self, request: LoginRequest) -> LoginResult:
        """Too many failures answer 429 even for the right password, and the same way whether
        or not the account exists (the limit is keyed by the typed name). Every outcome costs
        one password verify, so response times do not reveal which accounts exist."""
        before = await self.database.run(partial(_before_hash, limits=self.limits, request=request, now=utcnow()))
        if before.retry_after is not None:
            return LoginResult(retry_after=before.retry_after)
        user, failure, new_hash = before.user, None, None
        if user is None:
            await self.hasher.dummy_verify(request.password)
            failure = "unknown_user"
        else:
            matches, new_hash = await self.hasher.verify(request.password, user.password_hash)
            if not matches:
                failure = "bad_password"
            elif not user.is_active:
                failure = "inactive"
        if failure is not None:
            failed = partial(_count_failure, limits=self.limits, request=request, user=user, reason=failure)
            await self.database.run(failed)
            return LoginResult()
        opened = partial(_open_session, limits=self.limits, lifetimes=self.lifetimes, request=request,
                         user=user, new_hash=new_hash, hit_ids=before.hit_ids, now=utcnow())
        token = await self.database.run(opened)
        return LoginResult(user, token) if token else LoginResult()


@dataclass(frozen=True)
class _Before:
    retry_after: int | None = None
    hit_ids: tuple[int, ...] = ()
    user: User | None = None


def _before_hash(conn: Connection, *, limits: Limits, request: LoginRequest, now: datetime) -> _Before:
    wait = throttle.is_over(conn, limits.login_address(request.ip), now)
    hit_ids = []
    if wait is None:
        attempt = throttle.attempt(conn, limits.login(request.username, request.ip), now)
        wait, hit_ids = attempt.retry_after, attempt.hit_ids
    if wait is not None:
        conn.commit()
        events.store(conn, _event(Kind.LOGIN_FAILED, request, username=request.username, reason="throttled"))
        return _Before(retry_after=wait)
    user = None
    if rules.is_plausible_username(request.username):
        row = conn.execute(_BY_NAME, {"key": rules.username_key(request.username)}).first()
        user = User(**row._mapping) if row is not None else None
    return _Before(hit_ids=tuple(hit_ids), user=user)


def _count_failure(conn: Connection, *, limits: Limits, request: LoginRequest, user: User | None,
                   reason: str) -> None:
    # Failures from one address count against it across all names (password spraying).
    throttle.count(conn, limits.login_address(request.ip), utcnow())
    conn.commit()
    account_id = user.id if user is not None else None
    events.store(conn, _event(Kind.LOGIN_FAILED, request, user_id=account_id, username=request.username,
                              reason=reason))


def _open_session(conn: Connection, *, limits: Limits, lifetimes: sessions.Lifetimes, request: LoginRequest,
                  user: User, new_hash: str | None, hit_ids: tuple[int, ...], now: datetime) -> str | None:
    # Stamping the login first, on the condition that the account still has the hash that was
    # checked, locks the row (on Postgres) and decides: a password change or deactivation that
    # committed while the login hashed makes this a failed login, never a session opened with
    # the old password. The rehash has the same condition, so it never undoes such a change.
    checked = {"user_id": user.id, "checked_hash": user.password_hash}
    stamped = conn.execute(_STAMP, {**checked, "now": now}).rowcount == 1
    token = sessions.start_session(
        conn, user_id=user.id, password_hash=user.password_hash, lifetimes=lifetimes, remember=request.remember,
        ip=request.ip, user_agent=request.user_agent, replaces=request.replaces,
    ) if stamped else None
    if token is None:
        conn.rollback()
        _count_failure(conn, limits=limits, request=request, user=user, reason="password_changed")
        return None
    if new_hash:
        conn.execute(_REHASH, {**checked, "new_hash": new_hash})
        user.password_hash = new_hash
    throttle.forgive(conn, list(hit_ids))
    conn.commit()
    user.last_login_at = now
    events.store(conn, _event(Kind.LOGIN, request, user_id=user.id))
    return token


def _event(kind: Kind, request: LoginRequest, **fields) -> dict:
    return events.prepare(kind, ip=request.ip, user_agent=request.user_agent, via=request.via, **fields)
