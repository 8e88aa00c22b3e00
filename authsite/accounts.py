"""Accounts: creating users, checking passwords, changing them. No HTTP here."""

from collections.abc import Iterable

from sqlalchemy.exc import IntegrityError
from sqlmodel import select
from sqlmodel.ext.asyncio.session import AsyncSession

from authsite import rules, sessions
from authsite.models import DEFAULT_SCOPES, User, utcnow
from authsite.passwords import PasswordHasher


USERNAME_TAKEN = "That username is taken."


class AccountError(Exception):
    """A request the domain refuses, with the form field it concerns."""

    def __init__(self, field: str, message: str):
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


async def get_user_by_username(db: AsyncSession, username: str) -> User | None:
    if not rules.is_plausible_username(username):
        return None
    result = await db.exec(select(User).where(User.username_key == rules.username_key(username)))
    return result.first()


async def create_user(
    *,
    db: AsyncSession,
    hasher: PasswordHasher,
    username: str,
    password: str,
    email: str | None = None,
    scopes: Iterable[str] = DEFAULT_SCOPES,
) -> User:
    if problem := rules.username_problem(username):
        raise AccountError("username", problem)
    if problem := rules.password_problem(password):
        raise AccountError("password", problem)
    if await get_user_by_username(db, username):
        raise AccountError("username", USERNAME_TAKEN)
    user = User(
        username=username,
        username_key=rules.username_key(username),
        email=email or None,
        password_hash=await hasher.hash(password),
        scopes=_unique(scopes),
    )
    db.add(user)
    try:
        await db.commit()
    except IntegrityError:
        # Lost a race with a simultaneous sign-up: the unique index decided.
        await db.rollback()
        raise AccountError("username", USERNAME_TAKEN) from None
    await db.refresh(user)
    return user


async def authenticate(
    *, db: AsyncSession, hasher: PasswordHasher, username: str, password: str
) -> User | None:
    """The active user with this name and password, or None, at the same cost either way."""
    user = await get_user_by_username(db, username)
    if user is None:
        await hasher.dummy_verify(password)
        return None
    matches, new_hash = await hasher.verify(password, user.password_hash)
    if not matches or not user.is_active:
        return None
    if new_hash:
        user.password_hash = new_hash
    user.last_login_at = utcnow()
    db.add(user)
    await db.commit()
    return user


async def set_password(
    *, db: AsyncSession, hasher: PasswordHasher, user: User, password: str, keep_session_id: int | None = None
) -> None:
    """New password; every session of the user ends but `keep_session_id`."""
    if problem := rules.password_problem(password):
        raise AccountError("password", problem)
    user.password_hash = await hasher.hash(password)
    db.add(user)
    await sessions.end_user_sessions(db=db, user_id=user.id, keep_session_id=keep_session_id, commit=False)
    await db.commit()


def _unique(scopes: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(scopes))
