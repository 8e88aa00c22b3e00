"""What administrators may do to accounts, and the rules that bound it. No HTTP here."""

import re
from collections.abc import Iterable
from dataclasses import dataclass

from sqlalchemy import Text, cast, func
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from authsite import accounts, rules, sessions
from authsite.models import User

PAGE_SIZE = 50
PRIVILEGED_SCOPES = frozenset({"admin", "super"})
SCOPE_PATTERN = re.compile(r"[a-z0-9][a-z0-9:._-]{0,63}")
# Sorts after every character a key can hold, closing a prefix range.
PREFIX_END = "\U0010ffff"


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


async def count_supers(db: AsyncSession) -> int:
    # Scopes are a JSON list; matching the quoted name in its text is exact,
    # because scope names cannot contain quotes.
    holds_super = cast(User.scopes, Text).contains('"super"')
    statement = select(func.count()).select_from(User).where(col(User.is_active), holds_super)
    return (await db.exec(statement)).one()


def clean_scopes(submitted: Iterable[str]) -> list[str]:
    scopes = []
    for scope in (s.strip() for s in submitted):
        if not scope:
            continue
        if not SCOPE_PATTERN.fullmatch(scope):
            raise AdminInvalid(f"{scope[:70]!r} is not a valid permission name (a-z, 0-9, ':', '.', '_', '-').")
        scopes.append(scope)
    return list(dict.fromkeys(["authenticated", *scopes]))


async def change_user(
    *, db: AsyncSession, actor: Actor, user: User, scopes: list[str], active: bool
) -> tuple[list[str], bool]:
    """Apply new scopes and active flag; returns what changed (old scopes, whether `active` changed)."""
    old = list(user.scopes)
    _check_may_touch(actor, user)
    if (set(old) ^ set(scopes)) & PRIVILEGED_SCOPES and not actor.is_super:
        raise AdminRefused("Only a super user may grant or remove the admin and super permissions.")
    if user.id == actor.id and (("super" in old and "super" not in scopes) or not active):
        if await count_supers(db) <= 1:
            raise AdminInvalid("You are the last super user: keep your super permission and stay active.")
    user.scopes = scopes
    active_changed = user.is_active != active
    db.add(user)
    if active_changed:
        await accounts.set_user_active(db=db, user=user, active=active)
    else:
        await db.commit()
    return old, active_changed


async def end_all_sessions(*, db: AsyncSession, actor: Actor, user: User) -> None:
    _check_may_touch(actor, user)
    await sessions.end_user_sessions(db=db, user_id=user.id)


def check_may_issue_reset(actor: Actor, user: User) -> None:
    _check_may_touch(actor, user)
    if not user.is_active:
        raise AdminInvalid("This account is deactivated; activate it before sending a reset link.")


def _check_may_touch(actor: Actor, user: User) -> None:
    # A reset link or a deactivation is as good as taking the account over, so
    # accounts holding admin or super are in the hands of super users only.
    if set(user.scopes) & PRIVILEGED_SCOPES and not actor.is_super and user.id != actor.id:
        raise AdminRefused("Only a super user may change an account that holds admin or super.")
