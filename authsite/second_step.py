"""Codes for a second factor, typed to finish a login or to confirm who you are: checked,
counted in the login limits, audited. No HTTP here.

A login in two steps (authsite/logins.py leaves the pending login): the browser sends the pending
login's token and a code. Nothing about the account is told before the code is right. A wrong code
counts as a failed login of the account (and in a bucket of the account's own, from anywhere),
and the fifth ends the pending login. A right one spends the pending login and opens the session
in the same transaction, so of two racing right answers exactly one opens a session.
"""

from dataclasses import dataclass
from datetime import datetime
from functools import partial

from sqlalchemy import Connection, bindparam, select

from authsite import events, pending, sessions, throttle
from authsite.db import Database
from authsite.events import Kind
from authsite.factors.passkeys import PASSKEY, PasskeyAnswer, Passkeys
from authsite.factors.second_factors import RECOVERY_CODE, SecondFactors
from authsite.logins import (
    PENDING_LOGIN, STAMP_LOGIN, login_event, new_device_note, password_fingerprint, reserve_attempt,
)
from authsite.models import User, utcnow
from authsite.passwords import HashingBusy
from authsite.throttle import Limits

# Wrong codes a pending login survives; the fifth ends it (the visitor logs in again).
MAX_WRONG_CODES = 5

_user = User.__table__
_BY_ID = select(_user).where(_user.c.id == bindparam("user_id"))


@dataclass(frozen=True)
class CodeAttempt:
    """A code someone typed, and where from."""

    code: str
    ip: str | None = None
    user_agent: str | None = None
    via: str = "form"
    token: str | None = None  # the pending login's, for the second step of a login
    # (user id, nonce) of each account this browser's device cookie vouches for (known_devices.py).
    known_device: tuple[tuple[int, str], ...] = ()
    passkey: PasskeyAnswer | None = None  # a passkey's answer instead of a code

    def __repr__(self) -> str:  # never the code or the token
        return f"CodeAttempt(via={self.via!r})"


@dataclass(frozen=True)
class SecondStepResult:
    user: User | None = None
    token: str | None = None  # the new session's, when the code was right
    remember: bool = False
    method: str | None = None  # which factor answered
    codes_left: int | None = None  # after a recovery code was spent
    new_device: bool = False
    retry_after: int | None = None  # too many failures: answer 429
    gone: bool = False  # no pending login (never made, expired, spent): log in again
    ended: bool = False  # that wrong code was the last one allowed
    clone_of: User | None = None  # whose passkey answered with a counter that did not go up


@dataclass(frozen=True)
class CodeCheck:
    confirmed: bool = False
    method: str | None = None
    retry_after: int | None = None
    codes_left: int | None = None
    clone_suspected: bool = False


class SecondStep:
    def __init__(self, *, database: Database, factors: SecondFactors, passkeys: Passkeys, limits: Limits,
                 lifetimes: sessions.Lifetimes):
        self.database, self.factors, self.passkeys = database, factors, passkeys
        self.limits, self.lifetimes = limits, lifetimes

    async def finish_login(self, attempt: CodeAttempt) -> SecondStepResult:
        """The second step: the pending login behind `attempt.token`, finished by `attempt.code`."""
        return await self.database.run(partial(self._finish_login, attempt=attempt, now=utcnow()))

    async def check_code(self, *, user: User, attempt: CodeAttempt) -> CodeCheck:
        """A logged-in user's code (confirming who they are): counted and audited like the second step."""
        return await self.database.run(partial(self._check_code, user=user, attempt=attempt, now=utcnow()))

    def _finish_login(self, conn: Connection, *, attempt: CodeAttempt, now: datetime) -> SecondStepResult:
        step = pending.find(conn, purpose=PENDING_LOGIN, token=attempt.token, now=now)
        if step is None:
            return SecondStepResult(gone=True)
        user = _active_user(conn, step.user_id)
        if user is None:
            pending.claim(conn, step_id=step.id, now=now)
            conn.commit()
            return SecondStepResult(gone=True)
        hits = self._reserve(conn, user, attempt, now)
        if isinstance(hits, SecondStepResult):
            return hits
        # Claimed before the code is checked, in one transaction: racing answers take turns on
        # the row, and a wrong code rolls the claim back (and spends nothing).
        if not pending.claim(conn, step_id=step.id, now=now):
            return self._forgive(conn, hits, SecondStepResult(gone=True))
        method, refused = self._check(conn, user, attempt, now)
        if method is None:
            conn.rollback()
            throttle.settle(conn, hits)
            ended = pending.count_failure(conn, step_id=step.id, max_failures=MAX_WRONG_CODES)
            self._note_refusal(conn, refused, now)
            conn.commit()
            events.store(conn, login_event(Kind.LOGIN_FAILED, attempt, user_id=user.id, reason=refused.reason))
            return SecondStepResult(ended=ended, clone_of=user if refused.clone_suspected else None)
        token = None
        if step.data.get("password") == password_fingerprint(user.password_hash):
            token = _open_session(conn, user=user, data=step.data, attempt=attempt, lifetimes=self.lifetimes, now=now)
        if token is None:
            # The password changed (or the account went) since the first step: log in again.
            conn.rollback()
            pending.claim(conn, step_id=step.id, now=now)
            result = self._forgive(conn, hits, SecondStepResult(gone=True))
            events.store(conn, login_event(Kind.LOGIN_FAILED, attempt, user_id=user.id, reason="password_changed"))
            return result
        throttle.forgive(conn, hits)
        left = self.factors.codes_left(conn, user_id=user.id) if method == RECOVERY_CODE else None
        conn.commit()
        _audit_success(conn, attempt, user, method, kind=Kind.LOGIN, **new_device_note(attempt, user.id))
        return SecondStepResult(
            user=user, token=token, remember=bool(step.data.get("remember")), method=method, codes_left=left, new_device=user.id not in dict(attempt.known_device),
        )

    def _check_code(self, conn: Connection, *, user: User, attempt: CodeAttempt, now: datetime) -> CodeCheck:
        hits = self._reserve(conn, user, attempt, now)
        if isinstance(hits, SecondStepResult):
            return CodeCheck(retry_after=hits.retry_after)
        method, refused = self._check(conn, user, attempt, now)
        if method is None:
            conn.rollback()
            throttle.settle(conn, hits)
            self._note_refusal(conn, refused, now)
            conn.commit()
            events.store(conn, login_event(Kind.LOGIN_FAILED, attempt, user_id=user.id, reason=refused.reason))
            return CodeCheck(clone_suspected=refused.clone_suspected)
        throttle.forgive(conn, hits)
        left = self.factors.codes_left(conn, user_id=user.id) if method == RECOVERY_CODE else None
        conn.commit()
        if method == RECOVERY_CODE:
            events.store(conn, login_event(Kind.RECOVERY_CODE_USED, attempt, user_id=user.id))
        return CodeCheck(confirmed=True, method=method, codes_left=left)

    def _check(self, conn: Connection, user: User, attempt: CodeAttempt, now: datetime) -> tuple[str | None, "_Refused"]:
        """Which factor answered (None: refused, and why)."""
        if attempt.passkey is not None:
            assertion = self.passkeys.check(conn, answer=attempt.passkey, now=now, user_id=user.id)
            if assertion.ok:
                return PASSKEY, _Refused()
            return None, _Refused(assertion.reason, assertion.passkey_id if assertion.clone_suspected else None)
        method = self.factors.check_code(conn, user_id=user.id, code=attempt.code, now=now)
        return method, _Refused()

    def _note_refusal(self, conn: Connection, refused: "_Refused", now: datetime) -> None:
        if refused.suspected_passkey is not None:
            self.passkeys.mark_suspected_clone(conn, passkey_id=refused.suspected_passkey, now=now)

    def _reserve(self, conn: Connection, user: User, attempt: CodeAttempt, now: datetime):
        """The attempt's place in its buckets (its hit ids), or the result that refuses it."""
        device = dict(attempt.known_device).get(user.id)
        if device is not None:
            buckets = [*self.limits.login_device(device), *self.limits.second_factor_device(device)]
        else:
            buckets = [*self.limits.login(user.username, attempt.ip), *self.limits.login_address(attempt.ip),
                       *self.limits.second_factor(user.id)]
        throttled = partial(login_event, Kind.LOGIN_FAILED, attempt, user_id=user.id, reason="throttled")
        before = reserve_attempt(conn, limits=self.limits, buckets=buckets, now=now, throttled_event=throttled)
        if before.retry_after is not None:
            return SecondStepResult(retry_after=before.retry_after)
        if before.busy:
            raise HashingBusy()  # others of this account are being checked right now: try again shortly
        return list(before.hit_ids)

    @staticmethod
    def _forgive(conn: Connection, hits: list[int], result: SecondStepResult) -> SecondStepResult:
        conn.rollback()
        throttle.forgive(conn, hits)
        conn.commit()
        return result


@dataclass(frozen=True)
class _Refused:
    reason: str = "wrong_code"
    suspected_passkey: int | None = None  # a passkey whose counter went back: maybe copied

    @property
    def clone_suspected(self) -> bool:
        return self.suspected_passkey is not None


def _active_user(conn: Connection, user_id: int) -> User | None:
    row = conn.execute(_BY_ID, {"user_id": user_id}).first()
    return User(**row._mapping) if row is not None and row.is_active else None


def _open_session(conn: Connection, *, user: User, data: dict, attempt: CodeAttempt, lifetimes: sessions.Lifetimes,
                  now: datetime) -> str | None:
    checked = {"user_id": user.id, "checked_hash": user.password_hash}
    if conn.execute(STAMP_LOGIN, {**checked, "now": now}).rowcount != 1:
        return None
    user.last_login_at = now
    return sessions.start_session(
        conn, user_id=user.id, password_hash=user.password_hash, lifetimes=lifetimes,
        remember=bool(data.get("remember")), ip=attempt.ip, user_agent=attempt.user_agent,
        replaces=data.get("replaces"),
    )


def _audit_success(conn: Connection, attempt: CodeAttempt, user: User, method: str, *, kind: Kind, **detail) -> None:
    events.store(conn, login_event(kind, attempt, user_id=user.id, factor=method, **detail))
    if method == RECOVERY_CODE:
        events.store(conn, login_event(Kind.RECOVERY_CODE_USED, attempt, user_id=user.id))
