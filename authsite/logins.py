"""A login: the rate limits, the password check, the session row and the audit event. No HTTP here.

The database work comes in two units around the password hash, each one trip to the database
(`Database.run`): before the hash, the rate limits and the account's row; after it, the session
row or the failure counted, then the audit event. A login used to take six ORM transactions,
6 ms of CPU on top of its hash, which held back both login throughput and page latency during
a login storm (issue 6, bench/RESULTS.md). No connection is held while hashing.
"""

import asyncio
import contextlib
import hashlib
import random
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from functools import partial

from sqlalchemy import Connection, bindparam, select, update

from authsite import events, pending, rules, sessions, throttle
from authsite.db import Database, each_statement_committed
from authsite.events import Kind
from authsite.factors.second_factors import available_methods
from authsite.models import User, utcnow
from authsite.passwords import HashingBusy, PasswordHasher
from authsite.throttle import Limits

_user = User.__table__

# Built once: building a statement costs several times what running it does.
_BY_NAME = select(_user).where(_user.c.username_key == bindparam("key"))
_BY_EMAIL = select(_user).where(_user.c.email_key == bindparam("key"))
STAMP_LOGIN = update(_user).where(sessions.STILL_CHECKED).values(last_login_at=bindparam("now"))
_REHASH = update(_user).where(sessions.STILL_CHECKED).values(password_hash=bindparam("new_hash"))
_STILL_VALID = select(_user.c.id).where(sessions.STILL_CHECKED)

# A right password of an account with a second factor leaves a pending login (authsite/pending.py)
# for the second step (authsite/second_step.py): it lives this long, and ends after this many wrong codes.
PENDING_LOGIN = "login"
PENDING_LOGIN_LIFETIME = timedelta(minutes=5)


@dataclass(frozen=True)
class LoginRequest:
    """What the visitor sent, and what the audit log and the session row keep of where from."""

    username: str
    password: str
    remember: bool = False
    ip: str | None = None
    user_agent: str | None = None
    via: str = "form"
    replaces: str | None = None  # the token hash of the browser's current session, ended by this login
    # (user id, nonce) of each account this browser's device cookie vouches for (known_devices.py).
    known_device: tuple[tuple[int, str], ...] = ()

    def __repr__(self) -> str:  # never the password, not even in a traceback
        return f"LoginRequest(username={self.username!r}, via={self.via!r})"


@dataclass(frozen=True)
class LoginResult:
    user: User | None = None
    token: str | None = None  # for the session cookie, when the login succeeded
    retry_after: int | None = None  # set when throttled: answer 429
    # Set when the password was right and the account has a second factor: the token of the
    # pending login (for its cookie); no session exists yet, and `user` stays None.
    pending: str | None = None
    methods: tuple[str, ...] = ()  # how the second step can be answered
    # A browser whose device cookie does not name this account (a security notice goes out).
    new_device: bool = False
    # The password was right, but the account's address is unconfirmed and the site requires it
    # (AUTHSITE_EMAIL_VERIFICATION=mandatory): no session; the user is told where the link went.
    unconfirmed: User | None = None

    @property
    def needs_second_factor(self) -> bool:
        return self.pending is not None


class Logins:
    def __init__(self, *, database: Database, hasher: PasswordHasher, limits: Limits,
                 lifetimes: sessions.Lifetimes, email_required: bool = False):
        self.database, self.hasher, self.limits, self.lifetimes = database, hasher, limits, lifetimes
        self.email_required = email_required  # an unconfirmed address holds the login
        self._waiting = 0  # attempts of this process sleeping until their turn

    async def log_in(self, request: LoginRequest) -> LoginResult:
        """Too many failures answer 429 even for the right password, and the same way whether
        or not the account exists (the limit is keyed by the typed name). Every outcome costs
        one password verify, so response times do not reveal which accounts exist.
        Raises HashingBusy (answer 503) when the hashing queue is full."""
        before = await self._take_turn(partial(_before_hash, limits=self.limits, request=request))
        if before.retry_after is not None:
            return LoginResult(retry_after=before.retry_after)
        user, failure, new_hash = before.user, None, None
        try:
            if user is None:
                await self.hasher.dummy_verify(request.password)
                failure = "unknown_user"
            else:
                matches, new_hash = await self.hasher.verify(request.password, user.password_hash)
                if not matches:
                    failure = "bad_password"
                elif not user.is_active:
                    failure = "inactive"
        except BaseException:
            await self._give_back(before.hit_ids)
            raise
        if failure is not None:
            failed = partial(_count_failure, request=request, user=user, reason=failure, hit_ids=before.hit_ids)
            await self.database.run(failed)
            return LoginResult()
        if self.email_required and user.email and user.email_confirmed_at is None:
            await self.database.run(partial(_hold_unconfirmed, request=request, user=user, hit_ids=before.hit_ids))
            return LoginResult(unconfirmed=user)
        if user.mfa_enabled:
            held = partial(_hold_for_second_factor, request=request, user=user, new_hash=new_hash,
                           hit_ids=before.hit_ids, now=utcnow())
            token, methods = await self.database.run(held)
            return LoginResult(pending=token, methods=methods)
        opened = partial(_open_session, lifetimes=self.lifetimes, request=request,
                         user=user, new_hash=new_hash, hit_ids=before.hit_ids, now=utcnow())
        token = await self.database.run(opened)
        if not token:
            return LoginResult()
        return LoginResult(user, token, new_device=user.id not in dict(request.known_device))

    async def confirm_password(self, check: "PasswordCheck") -> "Confirmation":
        """A logged-in user proving their password again (a `current_password` field): counted in
        the same limits as a failed login of that account from that address, and audited, so a
        stolen session cannot guess its way to the password (issue 12, item 9)."""
        before = await self._take_turn(partial(_reserve_check, limits=self.limits, check=check))
        if before.retry_after is not None:
            return Confirmation(retry_after=before.retry_after)
        try:
            matches, _ = await self.hasher.verify(check.password, check.user.password_hash)
        except BaseException:
            await self._give_back(before.hit_ids)
            raise
        await self.database.run(partial(_settle_check, check=check, matches=matches, hit_ids=before.hit_ids))
        return Confirmation(confirmed=matches)

    async def _take_turn(self, reserve) -> "_Before":
        """Reserve the attempt's place in its buckets, waiting while they are full of attempts
        that are still being checked (right passwords sent together must all get in); refuse
        at once when the hashing queue has no room."""
        delay, waited = FIRST_WAIT_SECONDS, 0.0
        while True:
            if self.hasher.is_full:
                raise HashingBusy()
            before = await self.database.run(partial(reserve, now=utcnow()))
            if not before.busy:
                return before
            if waited >= MAX_TURN_WAIT_SECONDS or self._waiting >= MAX_WAITING:
                raise HashingBusy()
            pause = delay * (0.5 + random.random())  # jitter: racing attempts do not retry in step
            self._waiting += 1
            try:
                await asyncio.sleep(pause)
            finally:
                self._waiting -= 1
            waited += pause
            delay = min(delay * 2, LONGEST_WAIT_SECONDS)

    async def _give_back(self, hit_ids: tuple[int, ...]) -> None:
        with contextlib.suppress(Exception):
            await self.database.run(lambda conn: throttle.forgive(conn, list(hit_ids)))


# Waiting for a turn behind attempts still being checked: short sleeps that double, up to a
# bound; past it the attempt is answered "busy, try again" (503) rather than refused as a failure.
FIRST_WAIT_SECONDS = 0.01
LONGEST_WAIT_SECONDS = 0.25
MAX_TURN_WAIT_SECONDS = 10
# Each waiting attempt asks the database again now and then; beyond this many waiting at once in
# one process, a newcomer is answered "busy" at once (a flood must not become a flood of queries).
MAX_WAITING = 64


@dataclass(frozen=True)
class PasswordCheck:
    """A logged-in user typing their password again, and where from."""

    user: User
    password: str
    ip: str | None = None
    user_agent: str | None = None
    via: str = "account"

    def __repr__(self) -> str:  # never the password
        return f"PasswordCheck(user_id={self.user.id}, via={self.via!r})"


@dataclass(frozen=True)
class Confirmation:
    confirmed: bool = False
    retry_after: int | None = None  # set when throttled: answer 429


@dataclass(frozen=True)
class _Before:
    retry_after: int | None = None
    busy: bool = False
    hit_ids: tuple[int, ...] = ()
    user: User | None = None


def reserve_attempt(conn: Connection, *, limits: Limits, buckets: throttle.Buckets, now: datetime,
                    throttled_event: Callable[[], dict]) -> _Before:
    """Reserve the attempt in its buckets; a throttled burst is audited once per bucket and
    window, not once per request (issue 12, item 4)."""
    attempt = throttle.reserve(conn, buckets, now)
    if attempt.is_throttled:
        if throttle.is_first_in_window(conn, attempt.throttled_by, limits.login_account.window, now):
            events.store(conn, throttled_event())
        return _Before(retry_after=attempt.retry_after)
    return _Before(busy=attempt.busy, hit_ids=tuple(attempt.hit_ids))


def _before_hash(conn: Connection, *, limits: Limits, request: LoginRequest, now: datetime) -> _Before:
    with each_statement_committed(conn):  # a read and the reservation: no transaction needed around them
        return _reserve_login(conn, limits=limits, request=request, now=now)


def _reserve_login(conn: Connection, *, limits: Limits, request: LoginRequest, now: datetime) -> _Before:
    user = _find_account(conn, request.username)
    # A browser that has signed in to this account before is counted on its own: strangers
    # sharing its address (behind a proxy, a NAT) cannot lock the owner out (OWASP device cookies).
    device = dict(request.known_device).get(user.id) if user is not None else None
    if device is not None:
        buckets = limits.login_device(device)
    else:
        buckets = [*limits.login(request.username, request.ip), *limits.login_address(request.ip)]
    throttled = partial(login_event, Kind.LOGIN_FAILED, request, username=request.username, reason="throttled")
    before = reserve_attempt(conn, limits=limits, buckets=buckets, now=now, throttled_event=throttled)
    return replace(before, user=user)


def _find_account(conn: Connection, login: str) -> User | None:
    """The account a typed login names: by email when it has an @ (no username has one), else by
    username; None for one that names nobody (which then costs the same dummy hash)."""
    if not rules.is_plausible_username(login):
        return None
    if "@" in login:
        try:
            key = rules.email_key(rules.normalise_email(login))
        except ValueError:
            return None
        row = conn.execute(_BY_EMAIL, {"key": key}).first()
    else:
        row = conn.execute(_BY_NAME, {"key": rules.username_key(login)}).first()
    return User(**row._mapping) if row is not None else None


def _reserve_check(conn: Connection, *, limits: Limits, check: PasswordCheck, now: datetime) -> _Before:
    buckets = [*limits.login(check.user.username, check.ip), *limits.login_address(check.ip)]
    return reserve_attempt(conn, limits=limits, buckets=buckets, now=now,
                    throttled_event=partial(_check_event, check, reason="throttled"))


def _settle_check(conn: Connection, *, check: PasswordCheck, matches: bool, hit_ids: tuple[int, ...]) -> None:
    if matches:
        throttle.forgive(conn, list(hit_ids))
        conn.commit()
        return
    throttle.settle(conn, list(hit_ids))
    conn.commit()
    events.store(conn, _check_event(check))


def _check_event(check: PasswordCheck, *, reason: str = "wrong_current_password") -> dict:
    return events.prepare(Kind.LOGIN_FAILED, user_id=check.user.id, ip=check.ip, user_agent=check.user_agent,
                          via=check.via, reason=reason)


def _count_failure(conn: Connection, *, request: LoginRequest, user: User | None, reason: str,
                   hit_ids: tuple[int, ...]) -> None:
    # The reservation becomes a failure in each bucket (the name's, and the address's across all
    # names: password spraying): one statement, committed on its own, then the audit event.
    with each_statement_committed(conn):
        throttle.settle(conn, list(hit_ids))
        conn.commit()
        account_id = user.id if user is not None else None
        events.store(conn, login_event(Kind.LOGIN_FAILED, request, user_id=account_id, username=request.username,
                                       reason=reason))


def _hold_unconfirmed(conn: Connection, *, request: LoginRequest, user: User, hit_ids: tuple[int, ...]) -> None:
    # The right password is not a failure: its reservation is given back.
    throttle.forgive(conn, list(hit_ids))
    conn.commit()
    events.store(conn, login_event(Kind.LOGIN_FAILED, request, user_id=user.id, reason="email_unconfirmed"))


def _open_session(conn: Connection, *, lifetimes: sessions.Lifetimes, request: LoginRequest,
                  user: User, new_hash: str | None, hit_ids: tuple[int, ...], now: datetime) -> str | None:
    # Stamping the login first, on the condition that the account still has the hash that was
    # checked, locks the row (on Postgres) and decides: a password change or deactivation that
    # committed while the login hashed makes this a failed login, never a session opened with
    # the old password. The rehash has the same condition, so it never undoes such a change.
    checked = {"user_id": user.id, "checked_hash": user.password_hash}
    stamped = conn.execute(STAMP_LOGIN, {**checked, "now": now}).rowcount == 1
    token = sessions.start_session(
        conn, user_id=user.id, password_hash=user.password_hash, lifetimes=lifetimes, remember=request.remember,
        ip=request.ip, user_agent=request.user_agent, replaces=request.replaces,
    ) if stamped else None
    if token is None:
        conn.rollback()
        _count_failure(conn, request=request, user=user, reason="password_changed", hit_ids=hit_ids)
        return None
    if new_hash:
        conn.execute(_REHASH, {**checked, "new_hash": new_hash})
        user.password_hash = new_hash
    throttle.forgive(conn, list(hit_ids))
    conn.commit()
    user.last_login_at = now
    events.store(conn, login_event(Kind.LOGIN, request, user_id=user.id, **new_device_note(request, user.id)))
    return token


def _hold_for_second_factor(conn: Connection, *, request: LoginRequest, user: User, new_hash: str | None,
                            hit_ids: tuple[int, ...], now: datetime) -> tuple[str | None, tuple[str, ...]]:
    """The password was right, but the account has a second factor: no session yet, only a
    pending login for this browser (its token goes in a cookie) that remembers what the second
    step needs. None if the password or the account changed while the password was checked."""
    checked = {"user_id": user.id, "checked_hash": user.password_hash}
    if conn.execute(_STILL_VALID, checked).first() is None:
        _count_failure(conn, request=request, user=user, reason="password_changed", hit_ids=hit_ids)
        return None, ()
    if new_hash:
        conn.execute(_REHASH, {**checked, "new_hash": new_hash})
        user.password_hash = new_hash
    throttle.forgive(conn, list(hit_ids))
    token = begin_second_step(conn, user=user, remember=request.remember, via=request.via,
                              replaces=request.replaces, now=now)
    methods = tuple(available_methods(conn, user_id=user.id))
    conn.commit()
    events.store(conn, login_event(Kind.SECOND_STEP, request, user_id=user.id))
    return token, methods


def begin_second_step(conn: Connection, *, user: User, remember: bool, via: str, replaces: str | None,
                      now: datetime) -> str:
    """The pending login a first factor leaves for the second (its token, for the cookie). The caller commits."""
    return pending.begin(conn, purpose=PENDING_LOGIN, user_id=user.id, lifetime=PENDING_LOGIN_LIFETIME, now=now, data={
        "remember": remember, "via": via, "replaces": replaces,
        # Not the hash itself: enough to tell at the second step whether the password changed since.
        "password": password_fingerprint(user.password_hash),
    })


def new_device_note(request, user_id: int) -> dict:
    """`new_device=True` for the audit log when this browser has not signed in to the account before."""
    return {} if user_id in dict(request.known_device) else {"new_device": True}


def password_fingerprint(password_hash: str) -> str:
    return hashlib.sha256(password_hash.encode()).hexdigest()


def login_event(kind: Kind, request, **fields) -> dict:
    """An audit event of a login attempt (`request`: anything with ip, user_agent and via)."""
    return events.prepare(kind, ip=request.ip, user_agent=request.user_agent, via=request.via, **fields)

