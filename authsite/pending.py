"""Pending steps: a flow half-way through, as a row reached by a one-time token. No HTTP here.

A login waiting for its second factor is one, and so are a link that proves an email address, an
email change waiting for its link and the link that cancels it: the browser holds a random token, the table only its SHA-256 (as for
sessions and reset links), with the account, an expiry and a count of wrong answers. The same
few statements mint, find, claim, count and purge every kind; each kind is a `purpose`.
"""

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, bindparam, delete, insert, select, update

from authsite import tokens
from authsite.models import PendingStep

_step = PendingStep.__table__

_INSERT = insert(_step)
_FIND = select(_step.c.id, _step.c.user_id, _step.c.failures, _step.c.data).where(
    _step.c.token_hash == bindparam("token_hash"), _step.c.purpose == bindparam("purpose"),
    _step.c.expires_at > bindparam("now"),
)
_CLAIM = delete(_step).where(_step.c.id == bindparam("step_id"), _step.c.expires_at > bindparam("now"))
_FAILED = (
    update(_step).where(_step.c.id == bindparam("step_id"))
    .values(failures=_step.c.failures + 1).returning(_step.c.failures)
)
_END = delete(_step).where(_step.c.id == bindparam("step_id"))
_END_FOR_USER = delete(_step).where(_step.c.user_id == bindparam("user_id"))
_LIVE = (
    select(_step.c.id, _step.c.user_id, _step.c.failures, _step.c.data)
    .where(_step.c.user_id == bindparam("user_id"), _step.c.purpose == bindparam("purpose"),
           _step.c.expires_at > bindparam("now"))
    .order_by(_step.c.id)
)
_LATEST = (
    select(_step.c.id, _step.c.user_id, _step.c.failures, _step.c.data)
    .where(_step.c.user_id == bindparam("user_id"), _step.c.purpose == bindparam("purpose"),
           _step.c.expires_at > bindparam("now"))
    .order_by(_step.c.id.desc()).limit(1)
)


@dataclass(frozen=True)
class Step:
    id: int
    user_id: int
    failures: int
    data: dict[str, Any]


def begin(conn: Connection, *, purpose: str, user_id: int, lifetime: timedelta, now: datetime,
          data: dict[str, Any], token: str | None = None) -> str:
    """A new pending step; returns its token (for a cookie or a link; never stored), a new one
    unless the caller brings its own. The caller commits."""
    token = token or tokens.new_token()
    conn.execute(_INSERT, {
        "purpose": purpose, "token_hash": tokens.hash_token(token), "user_id": user_id, "created_at": now,
        "expires_at": now + lifetime, "failures": 0, "data": data,
    })
    return token


def find(conn: Connection, *, purpose: str, token: str | None, now: datetime) -> Step | None:
    """The live step of `purpose` behind `token`; None for a bad, used or expired one."""
    if not token or not tokens.is_well_formed(token):
        return None
    row = conn.execute(_FIND, {"token_hash": tokens.hash_token(token), "purpose": purpose, "now": now}).first()
    return Step(*row) if row is not None else None


def claim(conn: Connection, *, step_id: int, now: datetime) -> bool:
    """Spend the step; True for exactly one of racing claims (the DELETE decides). Uncommitted:
    rolling back puts the step back, so a claim can be tried before its answer is checked."""
    return conn.execute(_CLAIM, {"step_id": step_id, "now": now}).rowcount == 1


def count_failure(conn: Connection, *, step_id: int, max_failures: int) -> bool:
    """Note a wrong answer; at `max_failures` the step ends. True if it has ended. The caller commits."""
    failures = conn.execute(_FAILED, {"step_id": step_id}).scalar()
    if failures is None:
        return True  # ended meanwhile
    if failures >= max_failures:
        conn.execute(_END, {"step_id": step_id})
        return True
    return False


def end_for_user(conn: Connection, *, user_id: int, purpose: str | None = None) -> None:
    """Every pending step of an account (its second factors were reset, say), or those of one
    `purpose`. The caller commits."""
    if purpose is None:
        conn.execute(_END_FOR_USER, {"user_id": user_id})
    else:
        conn.execute(_END_FOR_USER.where(_step.c.purpose == purpose), {"user_id": user_id})


def live_for_user(conn: Connection, *, user_id: int, purpose: str, now: datetime) -> list[Step]:
    rows = conn.execute(_LIVE, {"user_id": user_id, "purpose": purpose, "now": now}).all()
    return [Step(*row) for row in rows]


def set_data(conn: Connection, *, step_id: int, data: dict[str, Any]) -> None:
    """The caller commits."""
    conn.execute(update(_step).where(_step.c.id == step_id).values(data=data))


def end_later_than(conn: Connection, *, user_id: int, purpose: str, step_id: int) -> None:
    """The account's steps of `purpose` made after `step_id`. The caller commits."""
    conn.execute(delete(_step).where(_step.c.user_id == user_id, _step.c.purpose == purpose, _step.c.id > step_id))


def latest_for_user(conn: Connection, *, user_id: int, purpose: str, now: datetime) -> Step | None:
    """The account's newest live step of `purpose`, if any."""
    row = conn.execute(_LATEST, {"user_id": user_id, "purpose": purpose, "now": now}).first()
    return Step(*row) if row is not None else None


def purge_expired(conn: Connection, *, now: datetime) -> None:
    conn.execute(delete(_step).where(_step.c.expires_at <= now))
