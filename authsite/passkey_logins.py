"""Signing in with a passkey alone: the rate limits, the assertion check, the session row and the
audit event, in one unit of work on one connection. No HTTP here.

A passkey made and used with user verification is something the user has (the authenticator) and
something they are or know (its fingerprint or PIN), so a passkey login counts as both factors and
opens a session at once. It is counted like a password login: a refused assertion is a failed
login of the passkey's account (when it names a passkey the site knows) and of the address, so the
same limits hold, and a success starts the same session with the same cookie, rotation and audit.
"""

from dataclasses import dataclass
from datetime import datetime
from functools import partial

from sqlalchemy import Connection, bindparam, select

from authsite import events, sessions, throttle
from authsite.db import Database
from authsite.events import Kind
from authsite.factors.passkeys import PASSKEY, PasskeyAnswer, Passkeys, owner_of
from authsite.logins import STAMP_LOGIN, login_event, new_device_note, reserve_attempt
from authsite.models import User, utcnow
from authsite.passwords import HashingBusy
from authsite.throttle import Limits

_user = User.__table__
_BY_ID = select(_user).where(_user.c.id == bindparam("user_id"))


@dataclass(frozen=True)
class PasskeyLogin:
    """A browser's passkey answer on the login page, and where it came from."""

    answer: PasskeyAnswer
    remember: bool = False
    ip: str | None = None
    user_agent: str | None = None
    via: str = "form"
    replaces: str | None = None  # the token hash of the browser's current session, ended by this login
    known_device: tuple[tuple[int, str], ...] = ()

    def __repr__(self) -> str:
        return f"PasskeyLogin(via={self.via!r})"


@dataclass(frozen=True)
class PasskeyLoginResult:
    user: User | None = None
    token: str | None = None  # for the session cookie
    retry_after: int | None = None
    new_device: bool = False
    clone_of: User | None = None  # the account whose passkey looked copied (its owner is told)


class PasskeyLogins:
    def __init__(self, *, database: Database, passkeys: Passkeys, limits: Limits, lifetimes: sessions.Lifetimes):
        self.database, self.passkeys, self.limits, self.lifetimes = database, passkeys, limits, lifetimes

    async def log_in(self, request: PasskeyLogin) -> PasskeyLoginResult:
        return await self.database.run(partial(self._log_in, request=request, now=utcnow()))

    def _log_in(self, conn: Connection, *, request: PasskeyLogin, now: datetime) -> PasskeyLoginResult:
        owner_id = owner_of(conn, request.answer.credential)
        row = conn.execute(_BY_ID, {"user_id": owner_id}).first() if owner_id is not None else None
        user = User(**row._mapping) if row is not None else None
        device = dict(request.known_device).get(user.id) if user is not None else None
        if device is not None:
            buckets = self.limits.login_device(device)
        elif user is not None:
            buckets = [*self.limits.login(user.username, request.ip), *self.limits.login_address(request.ip)]
        else:
            buckets = self.limits.login_address(request.ip)
        throttled = partial(login_event, Kind.LOGIN_FAILED, request, user_id=owner_id, reason="throttled")
        before = reserve_attempt(conn, limits=self.limits, buckets=buckets, now=now, throttled_event=throttled)
        if before.retry_after is not None:
            return PasskeyLoginResult(retry_after=before.retry_after)
        if before.busy:
            raise HashingBusy()
        hits = list(before.hit_ids)
        assertion = self.passkeys.check(conn, answer=request.answer, now=now)
        reason = None if assertion.ok else assertion.reason
        if reason is None and not user.is_active:
            reason = "inactive"
        token = None
        if reason is None:
            checked = {"user_id": user.id, "checked_hash": user.password_hash}
            if conn.execute(STAMP_LOGIN, {**checked, "now": now}).rowcount == 1:
                token = sessions.start_session(
                    conn, user_id=user.id, password_hash=user.password_hash, lifetimes=self.lifetimes,
                    remember=request.remember, ip=request.ip, user_agent=request.user_agent,
                    replaces=request.replaces,
                )
            reason = None if token else "password_changed"
        if reason is not None:
            conn.rollback()
            throttle.settle(conn, hits)
            if assertion.clone_suspected:
                self.passkeys.mark_suspected_clone(conn, passkey_id=assertion.passkey_id, now=now)
            conn.commit()
            events.store(conn, login_event(Kind.LOGIN_FAILED, request, user_id=owner_id, reason=reason))
            return PasskeyLoginResult(clone_of=user if assertion.clone_suspected else None)
        throttle.forgive(conn, hits)
        conn.commit()
        user.last_login_at = now
        events.store(conn, login_event(Kind.LOGIN, request, user_id=user.id, factor=PASSKEY,
                                       **new_device_note(request, user.id)))
        return PasskeyLoginResult(user=user, token=token, new_device=user.id not in dict(request.known_device))
