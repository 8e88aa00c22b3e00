"""What administrators may do to accounts, and the rules that bound it. No HTTP here."""

import re
from collections.abc import Iterable
from dataclasses import dataclass

from sqlalchemy import Connection, Text, bindparam, cast, delete, func, text, update
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from authsite import rules, sessions
from authsite.models import PasswordReset, Session, User

PAGE_SIZE = 50
PRIVILEGED_SCOPES = frozenset({"admin", "super"})
SCOPE_PATTERN = re.compile(r"[a-z0-9][a-z0-9:._-]{0,63}")
# Sorts after every character a key can hold, closing a prefix range.
PREFIX_END = "\U0010ffff"
# Any fixed number: the Postgres advisory lock under which changes of scopes and active flags
# take turns (SQLite: its write lock).
PRIVILEGE_LOCK_ID = 0x61646D696E  # "admin"

_user = User.__table__
_ACCOUNT = select(_user.c.id, _user.c.username, _user.c.scopes, _user.c.is_active).where(
    _user.c.id == bindparam("user_id")
)
# Scopes are a JSON list; matching the quoted name in its text is exact,
# because scope names cannot contain quotes.
_OTHER_ACTIVE_SUPERS = select(func.count()).select_from(_user).where(
    _user.c.is_active.is_(True), cast(_user.c.scopes, Text).contains('"super"'), _user.c.id != bindparam("user_id")
)
_SET_ACCOUNT = (
    update(_user).where(_user.c.id == bindparam("user_id"))
    .values(scopes=bindparam("scopes", type_=_user.c.scopes.type), is_active=bindparam("active"))
)
_END_SESSIONS = delete(Session.__table__).where(Session.__table__.c.user_id == bindparam("user_id"))
_END_RESETS = delete(PasswordReset.__table__).where(PasswordReset.__table__.c.user_id == bindparam("user_id"))
_ADVISORY_LOCK = text("SELECT pg_advisory_xact_lock(:id)")


class AdminRefused(Exception):
    """The acting admin lacks the standing for this change (a 403)."""


class AdminInvalid(Exception):
    """The change would break the site or is malformed (a 400)."""


@dataclass(frozen=True)
class Actor:
    id: int
    scopes: frozenset[str]

    @property
    def is_super(self) -> bool:
        return "super" in self.scopes


@dataclass(frozen=True)
class UserPage:
    users: list[User]
    next_after: str | None


async def search_users(*, db: AsyncSession, query: str = "", after: str | None = None) -> UserPage:
    """Users whose name or email starts with `query`, by name, a page at a time.

    Prefix ranges on the two indexed keys and keyset paging keep every page an
    index walk, however many users there are."""
    statement = select(User).order_by(col(User.username_key)).limit(PAGE_SIZE + 1)
    query = query.strip()
    if query:
        name, email = rules.username_key(query), query.casefold()
        statement = statement.where(
            (col(User.username_key) >= name) & (col(User.username_key) < name + PREFIX_END)
            | (col(User.email_key) >= email) & (col(User.email_key) < email + PREFIX_END)
        )
    if after:
        statement = statement.where(col(User.username_key) > after)
    users = list((await db.exec(statement)).all())
    has_more = len(users) > PAGE_SIZE
    users = users[:PAGE_SIZE]
    return UserPage(users, users[-1].username_key if has_more else None)


def clean_scopes(submitted: Iterable[str]) -> list[str]:
    scopes = []
    for scope in (s.strip() for s in submitted):
        if not scope:
            continue
        if not SCOPE_PATTERN.fullmatch(scope):
            raise AdminInvalid(f"{scope[:70]!r} is not a valid permission name (a-z, 0-9, ':', '.', '_', '-').")
        scopes.append(scope)
    return list(dict.fromkeys(["authenticated", *scopes]))


@dataclass(frozen=True)
class Change:
    """What `change_user` did to an account."""

    username: str
    before: list[str]
    after: list[str]
    active_changed: bool

    @property
    def scopes_changed(self) -> bool:
        return set(self.before) != set(self.after)


class NoSuchUser(LookupError):
    """The account to change is not there (a 404)."""


def change_user(
    conn: Connection, *, actor_id: int | None, user_id: int, scopes: list[str], active: bool | None,
    grantable: frozenset[str],
) -> Change:
    """Set `user_id`'s scopes (and active flag, unless None), as `actor_id` (None: the operator
    at the shell, bound only by the last-super rule); one unit of work for `Database.run`.

    Two supers demoting or deactivating each other at once both passed every check made before
    either wrote (issue 12). So changes take turns under one lock, and everything they decide on
    (the actor's standing too: the request's is from before the lock) is read after taking it."""
    _take_turns(conn)
    user = _account(conn, user_id)
    if user is None:
        raise NoSuchUser(user_id)
    active = user.is_active if active is None else active
    if actor_id is not None:
        _check_may_change(_acting_account(conn, actor_id), user, scopes, grantable)
    if user.is_active and "super" in user.scopes and ("super" not in scopes or not active):
        if conn.execute(_OTHER_ACTIVE_SUPERS, {"user_id": user_id}).scalar() == 0:
            raise AdminInvalid("This is the last super user still active: give super to another account first.")
    change = Change(user.username, list(user.scopes), scopes, active != user.is_active)
    conn.execute(_SET_ACCOUNT, {"user_id": user_id, "scopes": scopes, "active": active})
    if not active:
        conn.execute(_END_SESSIONS, {"user_id": user_id})
    if change.scopes_changed or change.active_changed:
        # A pending reset link was judged against the account as it was (who may make one for
        # whom); it does not outlive a change of standing, nor come back on reactivation.
        conn.execute(_END_RESETS, {"user_id": user_id})
    return change


def _take_turns(conn: Connection) -> None:
    if conn.dialect.name == "postgresql":
        conn.execute(_ADVISORY_LOCK, {"id": PRIVILEGE_LOCK_ID})
    elif conn.dialect.name == "sqlite":
        # The database's write lock, taken before the first read (sqlite3 would begin only
        # at the first write, after the reads this change decides on).
        conn.exec_driver_sql("BEGIN IMMEDIATE")


def _account(conn: Connection, user_id: int):
    if not rules.is_row_id(user_id):
        return None
    return conn.execute(_ACCOUNT, {"user_id": user_id}).first()


def _acting_account(conn: Connection, actor_id: int) -> Actor:
    account = _account(conn, actor_id)
    if account is None or not account.is_active:
        raise AdminRefused("Your account is no longer active.")
    if not set(account.scopes) & PRIVILEGED_SCOPES:
        raise AdminRefused("Your account no longer holds admin or super.")
    return Actor(id=actor_id, scopes=frozenset(account.scopes))


def _check_may_change(actor: Actor, user, scopes: list[str], grantable: frozenset[str]) -> None:
    check_may_touch(actor, user)
    for scope in sorted(set(user.scopes) ^ set(scopes)):
        if refusal := _scope_refusal(actor, user, scope, grantable):
            raise AdminRefused(refusal)


def may_change_scope(actor: Actor, user, scope: str, grantable: frozenset[str]) -> bool:
    """Whether `actor` may grant or remove `scope` on `user` (what the admin page offers)."""
    return _scope_refusal(actor, user, scope, grantable) is None and _may_touch(actor, user.id, user.scopes)


@dataclass(frozen=True)
class ScopeChoice:
    scope: str
    held: bool
    editable: bool


def scope_choices(actor: Actor, user, grantable: frozenset[str]) -> list[ScopeChoice]:
    """The permissions the admin page lists for `user`: admin and super, those admins may hand
    out, and whatever the account holds; each editable only where `actor` may change it."""
    shown = dict.fromkeys(["admin", "super", *sorted(grantable), *user.scopes])
    shown.pop("authenticated", None)
    return [ScopeChoice(scope, scope in user.scopes, may_change_scope(actor, user, scope, grantable)) for scope in shown]


def _scope_refusal(actor: Actor, user, scope: str, grantable: frozenset[str]) -> str | None:
    # Nobody raises their own standing, nor drops super behind the last-super check's back;
    # a plain admin hands out only what the site lists as theirs to give (AUTHSITE_ADMIN_GRANTABLE_SCOPES).
    if user.id == actor.id:
        return "You cannot change your own permissions: another super user can (or an operator with `run.py set-scopes`)."
    if actor.is_super or scope == "authenticated":
        return None
    if scope in PRIVILEGED_SCOPES:
        return "Only a super user may grant or remove the admin and super permissions."
    if scope not in grantable:
        return f"Only a super user may grant or remove {scope!r}; an admin may change only {_listed(grantable)}."
    return None


def _listed(grantable: frozenset[str]) -> str:
    return ", ".join(repr(scope) for scope in sorted(grantable)) if grantable else "no permissions on this site"


async def end_all_sessions(*, db: AsyncSession, actor: Actor, user: User) -> None:
    check_may_touch(actor, user)
    await sessions.end_user_sessions(db=db, user_id=user.id)


def check_may_issue_reset(actor: Actor, user: User) -> None:
    check_may_touch(actor, user)
    if not user.is_active:
        raise AdminInvalid("This account is deactivated; activate it before sending a reset link.")


def is_live_reset_issuer(*, issuer_id: int, issuer_scopes: Iterable[str], issuer_active: bool, user) -> bool:
    """Whether an admin-made reset link may still be used: its maker is active, holds admin or
    super, and may still touch the account as it is now (a plain admin's link for a plain user
    must not become a way into an account that has since been made an admin)."""
    issuer = Actor(id=issuer_id, scopes=frozenset(issuer_scopes))
    return issuer_active and bool(issuer.scopes & PRIVILEGED_SCOPES) and _may_touch(issuer, user.id, user.scopes)


def check_may_touch(actor: Actor, user) -> None:
    """AdminRefused unless `actor` may end the sessions of, deactivate or reset `user`."""
    if not _may_touch(actor, user.id, user.scopes):
        raise AdminRefused("Only a super user may change an account that holds admin or super.")


def _may_touch(actor: Actor, user_id: int, user_scopes: Iterable[str]) -> bool:
    # A reset link or a deactivation is as good as taking the account over, so
    # accounts holding admin or super are in the hands of super users only.
    return actor.is_super or user_id == actor.id or not set(user_scopes) & PRIVILEGED_SCOPES
