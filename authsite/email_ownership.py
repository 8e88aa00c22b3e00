"""Proving that an email address belongs to its account. No HTTP here.

An address is trusted (`user.email_confirmed_at`) only once mail sent to it came back: a verify
link opened, or a reset link used (authsite/web/reset.py). Links are pending steps
(authsite/pending.py): a 256-bit token in the mail, its SHA-256 in the table, 24 hours, one use.

A new address does not replace the old one until its link is opened: whoever holds a session
(stolen, or a borrowed laptop) cannot move the account's mail, and with it password resets, to
themselves by typing an address. The old address is told, with a link of its own that cancels
the change, puts the old address back if the change went through meanwhile, and ends every
session.
"""

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import Connection, bindparam, select, update
from sqlalchemy.exc import IntegrityError

from authsite import pending, rules, sessions
from authsite.models import PasswordReset, User

LINK_LIFETIME = timedelta(hours=24)
# "This was not me" must outlive the change it undoes.
CANCEL_LIFETIME = timedelta(days=7)
VERIFY = "verify_email"
CHANGE = "email_change"
CANCEL = "email_change_cancel"

_user = User.__table__
_reset = PasswordReset.__table__
_ADDRESS = select(_user.c.email, _user.c.email_confirmed_at, _user.c.is_active).where(_user.c.id == bindparam("user_id"))
_CONFIRM = (
    update(_user).where(_user.c.id == bindparam("user_id"), _user.c.email_key == bindparam("key"),
                        _user.c.email_confirmed_at.is_(None))
    .values(email_confirmed_at=bindparam("now"))
)
_SET_ADDRESS = update(_user).where(_user.c.id == bindparam("user_id")).values(
    email=bindparam("email"), email_key=bindparam("key"), email_confirmed_at=bindparam("confirmed_at"),
)
_END_RESETS = _reset.delete().where(_reset.c.user_id == bindparam("user_id"))


@dataclass(frozen=True)
class Opened:
    """What a link did: `kind` is VERIFY or CHANGE, `user_id` whose, `email` the address proved."""

    kind: str
    user_id: int
    email: str
    old_email: str | None = None
    refused: str | None = None  # why a change could not be made (the address was taken meanwhile)


def start_verification(conn: Connection, *, user_id: int, email: str, now: datetime) -> str:
    """A link that proves `email` for `user_id` (earlier ones stop working). The caller commits."""
    pending.end_for_user(conn, user_id=user_id, purpose=VERIFY)
    return pending.begin(conn, purpose=VERIFY, user_id=user_id, lifetime=LINK_LIFETIME, now=now, data={"email": email})


def request_change(conn: Connection, *, user_id: int, new_email: str, old_email: str | None,
                   now: datetime) -> tuple[str, str | None]:
    """A pending change to `new_email`: the link for the new address, and for the old one (if any)
    the link that cancels it. An earlier pending change ends. The caller commits."""
    pending.end_for_user(conn, user_id=user_id, purpose=CHANGE)
    change = pending.begin(conn, purpose=CHANGE, user_id=user_id, lifetime=LINK_LIFETIME, now=now,
                           data={"email": new_email, "old": old_email})
    cancel = None
    if old_email:
        cancel = pending.begin(conn, purpose=CANCEL, user_id=user_id, lifetime=CANCEL_LIFETIME, now=now,
                               data={"old": old_email, "new": new_email})
    return change, cancel


def pending_change(conn: Connection, *, user_id: int, now: datetime) -> str | None:
    """The address a change is waiting to move to, if one is."""
    step = pending.latest_for_user(conn, user_id=user_id, purpose=CHANGE, now=now)
    return step.data.get("email") if step is not None else None


def open_link(conn: Connection, *, token: str, now: datetime) -> Opened | None:
    """Spend a verify or change link; None for a bad, used or expired one, or one for an address the
    account no longer has. Commits."""
    for kind in (VERIFY, CHANGE):
        step = pending.find(conn, purpose=kind, token=token, now=now)
        if step is not None:
            break
    else:
        return None
    if not pending.claim(conn, step_id=step.id, now=now):
        return None
    row = conn.execute(_ADDRESS, {"user_id": step.user_id}).first()
    email = step.data.get("email")
    if row is None or not row.is_active or not email:
        conn.commit()
        return None
    if kind == VERIFY:
        if rules.email_key(row.email or "") != rules.email_key(email):
            conn.commit()  # the account has another address now: this link proves nothing of it
            return None
        conn.execute(_CONFIRM, {"user_id": step.user_id, "key": rules.email_key(email), "now": now})
        conn.commit()
        return Opened(VERIFY, step.user_id, email)
    try:
        _move_address(conn, user_id=step.user_id, email=email, confirmed_at=now)
    except IntegrityError:
        conn.rollback()
        pending.claim(conn, step_id=step.id, now=now)
        conn.commit()
        return Opened(CHANGE, step.user_id, email, row.email, refused="taken")
    conn.commit()
    return Opened(CHANGE, step.user_id, email, row.email)


def find_cancel(conn: Connection, *, token: str, now: datetime) -> pending.Step | None:
    return pending.find(conn, purpose=CANCEL, token=token, now=now)


def cancel_change(conn: Connection, *, token: str, now: datetime) -> pending.Step | None:
    """"This was not me": the pending change ends, the old address comes back if the change went
    through (and nobody else took it meanwhile), and every session of the account ends. Commits."""
    step = pending.find(conn, purpose=CANCEL, token=token, now=now)
    if step is None or not pending.claim(conn, step_id=step.id, now=now):
        return None
    pending.end_for_user(conn, user_id=step.user_id, purpose=CHANGE)
    row = conn.execute(_ADDRESS, {"user_id": step.user_id}).first()
    old, new = step.data.get("old"), step.data.get("new")
    if row is not None and old and row.email and rules.email_key(row.email) == rules.email_key(new or ""):
        try:
            # It was proved before the change (a cancel link goes only to an address on the account).
            _move_address(conn, user_id=step.user_id, email=old, confirmed_at=now)
        except IntegrityError:
            conn.rollback()
            pending.claim(conn, step_id=step.id, now=now)
            pending.end_for_user(conn, user_id=step.user_id, purpose=CHANGE)
    conn.execute(sessions.END_USER_SESSIONS, {"user_id": step.user_id})
    conn.commit()
    return step


def proved_by_mail(conn: Connection, *, user_id: int, now: datetime) -> bool:
    """Mail sent to the account's address came back (a reset link was used): the address is
    confirmed. True if it was unconfirmed until now. The caller commits."""
    row = conn.execute(_ADDRESS, {"user_id": user_id}).first()
    if row is None or not row.email or row.email_confirmed_at is not None:
        return False
    key = rules.email_key(row.email)
    return conn.execute(_CONFIRM, {"user_id": user_id, "key": key, "now": now}).rowcount == 1


def mark_confirmed(conn: Connection, *, user_id: int, now: datetime) -> bool:
    """An operator's word that the address is the owner's. The caller commits."""
    return proved_by_mail(conn, user_id=user_id, now=now)


def _move_address(conn: Connection, *, user_id: int, email: str, confirmed_at: datetime) -> None:
    conn.execute(_SET_ADDRESS, {"user_id": user_id, "email": email, "key": rules.email_key(email),
                                "confirmed_at": confirmed_at})
    # A reset link mailed to the address being left must not outlive the move.
    conn.execute(_END_RESETS, {"user_id": user_id})
