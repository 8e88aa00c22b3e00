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

from authsite import pending, rules, sessions, tokens
from authsite.models import PasswordReset, User

LINK_LIFETIME = timedelta(hours=24)
# "This was not me" must outlive the change it undoes.
CANCEL_LIFETIME = timedelta(days=7)
VERIFY = "verify_email"
CHANGE = "email_change"
CANCEL = "email_change_cancel"
# authsite/sign_in_codes.py's steps (which imports this module), named here to end them.
SIGN_IN_CODE, SIGN_IN_LINK = "sign_in_code", "sign_in_link"

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
# A password hash no password matches (passlib knows no such scheme): the account has no password
# until a reset link sets one (authsite/passwords.py answers it like a wrong password).
UNUSABLE_PREFIX = "!unusable:"
_NO_PASSWORD = update(_user).where(_user.c.id == bindparam("user_id")).values(password_hash=bindparam("unusable"))


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
                   old_confirmed: bool, now: datetime) -> tuple[str, str | None]:
    """A pending change to `new_email`: the link for the new address, and for the old one (if it
    was proved: only then does it speak for the owner) the link that cancels it. An earlier pending
    change ends. The caller commits."""
    pending.end_for_user(conn, user_id=user_id, purpose=CHANGE)
    change = pending.begin(conn, purpose=CHANGE, user_id=user_id, lifetime=LINK_LIFETIME, now=now,
                           data={"email": new_email, "old": old_email})
    cancel = _cancel_link(conn, user_id=user_id, old=old_email, new=new_email, now=now) if old_confirmed else None
    return change, cancel


def after_removal(conn: Connection, *, user_id: int, old_email: str, old_confirmed: bool, now: datetime) -> str | None:
    """The address was removed (it takes effect at once): the cancel links that expected it now
    expect none, and a proved old address gets a cancel link of its own. The caller commits."""
    _retarget_cancels(conn, user_id=user_id, left=old_email, now_at=None, now=now)
    return _cancel_link(conn, user_id=user_id, old=old_email, new=None, now=now) if old_confirmed else None


def _cancel_link(conn: Connection, *, user_id: int, old: str | None, new: str | None, now: datetime) -> str | None:
    if not old:
        return None
    return pending.begin(conn, purpose=CANCEL, user_id=user_id, lifetime=CANCEL_LIFETIME, now=now,
                         data={"old": old, "new": new, "asked_at": now.isoformat()})


def _retarget_cancels(conn: Connection, *, user_id: int, left: str | None, now_at: str | None, now: datetime) -> None:
    """A cancel link undoes a change wherever the address went after it: when the address moves
    on from `left` to `now_at`, the live cancel links expecting `left` expect `now_at` instead."""
    for step in pending.live_for_user(conn, user_id=user_id, purpose=CANCEL, now=now):
        if _same(step.data.get("new"), left):
            pending.set_data(conn, step_id=step.id, data={**step.data, "new": now_at})


def _same(one: str | None, other: str | None) -> bool:
    return rules.email_key(one or "") == rules.email_key(other or "")


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
        _move_address(conn, user_id=step.user_id, email=email, confirmed_at=now, left=row.email, now=now)
    except IntegrityError:
        conn.rollback()
        pending.claim(conn, step_id=step.id, now=now)
        conn.commit()
        return Opened(CHANGE, step.user_id, email, row.email, refused="taken")
    conn.commit()
    return Opened(CHANGE, step.user_id, email, row.email)


def find_link(conn: Connection, *, token: str, now: datetime):
    """The live verify or change link behind `token` (with its `purpose`), without spending it."""
    for kind in (VERIFY, CHANGE):
        step = pending.find(conn, purpose=kind, token=token, now=now)
        if step is not None:
            return Link(kind, step.data)
    return None


@dataclass(frozen=True)
class Link:
    purpose: str
    data: dict


def find_cancel(conn: Connection, *, token: str, now: datetime) -> pending.Step | None:
    return pending.find(conn, purpose=CANCEL, token=token, now=now)


def cancel_change(conn: Connection, *, token: str, now: datetime) -> pending.Step | None:
    """"This was not me", from a proved old address: whoever asked knew the password, so the
    pending change ends, the old address comes back if the address moved on since (however many
    times: the link follows it), cancel links made after this one (by whoever held the account
    meanwhile) end, second factors and recovery codes added since the change was asked for go,
    the password stops working (a reset link to the old address sets a new one), and every
    session ends. Commits."""
    step = pending.find(conn, purpose=CANCEL, token=token, now=now)
    if step is None or not pending.claim(conn, step_id=step.id, now=now):
        return None
    user_id = step.user_id
    pending.end_for_user(conn, user_id=user_id, purpose=CHANGE)
    pending.end_later_than(conn, user_id=user_id, purpose=CANCEL, step_id=step.id)
    row = conn.execute(_ADDRESS, {"user_id": user_id}).first()
    old, new = step.data.get("old"), step.data.get("new")
    if row is not None and old and _same(row.email, new) and not _same(row.email, old) and not _taken(conn, old):
        try:
            _move_address(conn, user_id=user_id, email=old, confirmed_at=now, left=row.email, now=now)
        except IntegrityError:  # taken by another account this very moment: try again without it
            conn.rollback()
            return cancel_change(conn, token=token, now=now)
    asked_at = step.data.get("asked_at")
    if asked_at:
        from authsite.factors.second_factors import remove_factors_since

        remove_factors_since(conn, user_id=user_id, since=datetime.fromisoformat(asked_at))
    disable_password(conn, user_id=user_id)
    conn.execute(sessions.END_USER_SESSIONS, {"user_id": user_id})
    conn.commit()
    return step


def mask(email: str) -> str:
    """a***@example.com: enough for the owner to recognise, little for anyone looking over a shoulder."""
    local, _, domain = email.partition("@")
    return f"{local[:1]}***@{domain}" if domain else ""


def _taken(conn: Connection, email: str) -> bool:
    return conn.execute(select(_user.c.id).where(_user.c.email_key == rules.email_key(email))).first() is not None


def disable_password(conn: Connection, *, user_id: int) -> None:
    """No password opens the account until a reset link sets one. The caller commits."""
    conn.execute(_NO_PASSWORD, {"user_id": user_id, "unusable": UNUSABLE_PREFIX + tokens.new_token()})


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


def _move_address(conn: Connection, *, user_id: int, email: str, confirmed_at: datetime, left: str | None,
                  now: datetime) -> None:
    conn.execute(_SET_ADDRESS, {"user_id": user_id, "email": email, "key": rules.email_key(email),
                                "confirmed_at": confirmed_at})
    _retarget_cancels(conn, user_id=user_id, left=left, now_at=email, now=now)
    # A reset link or sign-in code mailed to the address being left must not outlive the move.
    conn.execute(_END_RESETS, {"user_id": user_id})
    for purpose in (SIGN_IN_CODE, SIGN_IN_LINK):
        pending.end_for_user(conn, user_id=user_id, purpose=purpose)
