"""Accounts: creating users, checking and changing passwords, profiles. No HTTP here."""

from collections.abc import Iterable

from sqlalchemy import delete, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm.attributes import set_committed_value
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from authsite import rules, sessions
from authsite.models import DEFAULT_SCOPES, PasswordReset, User, utcnow
from authsite.passwords import PasswordHasher

USERNAME_TAKEN = "That username is taken."
USERNAME_CONFUSABLE = "That username looks too much like one that is taken. Choose another."
EMAIL_TAKEN = "That email address belongs to another account."
WRONG_PASSWORD = "That is not your current password."


class AccountError(Exception):
    """A request the domain refuses, with the form field it concerns."""

    def __init__(self, field: str, message: str):
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


async def get_user_by_id(db: AsyncSession, user_id: int) -> User | None:
    return await db.get(User, user_id) if rules.is_row_id(user_id) else None


async def usernames_by_id(db: AsyncSession, user_ids: set[int]) -> dict[int, str]:
    if not user_ids:
        return {}
    rows = await db.exec(select(User.id, User.username).where(col(User.id).in_(user_ids)))
    return dict(rows.all())


async def get_user_by_username(db: AsyncSession, username: str) -> User | None:
    if not rules.is_plausible_username(username):
        return None
    result = await db.exec(select(User).where(User.username_key == rules.username_key(username)))
    return result.first()


async def get_user_by_email(db: AsyncSession, email: str) -> User | None:
    try:
        key = rules.email_key(rules.normalise_email(email))
    except ValueError:
        return None
    return (await db.exec(select(User).where(User.email_key == key))).first()


async def get_user_by_login(db: AsyncSession, login: str) -> User | None:
    """A user by username, or by email when `login` has an @."""
    if "@" in login:
        return await get_user_by_email(db, login)
    return await get_user_by_username(db, login)


async def create_user(
    *,
    db: AsyncSession,
    hasher: PasswordHasher,
    username: str,
    password: str,
    email: str | None = None,
    scopes: Iterable[str] = DEFAULT_SCOPES,
) -> User:
    """A new account; raises AccountError naming the first field that is wrong."""
    if problem := rules.username_problem(username):
        raise AccountError("username", problem)
    email = _checked_email(email)
    if problem := rules.password_problem(password, user_inputs=[username, email or ""]):
        raise AccountError("password", problem)
    if await get_user_by_username(db, username):
        raise AccountError("username", USERNAME_TAKEN)
    skeleton = rules.username_skeleton(username)
    if await _skeleton_is_taken(db, skeleton):
        # The same name may have been committed by a racing sign-up since the check above.
        raise await _which_is_taken(db, username)
    if email and await get_user_by_email(db, email):
        raise AccountError("email", EMAIL_TAKEN)
    user = User(
        username=rules.normalise_username(username),
        username_key=rules.username_key(username),
        username_skeleton=skeleton,
        email=email,
        email_key=rules.email_key(email) if email else None,
        password_hash=await hasher.hash(password),
        scopes=list(dict.fromkeys(scopes)),
    )
    db.add(user)
    try:
        await db.commit()
    except IntegrityError:
        # Lost a race with a simultaneous sign-up: the unique indexes decided.
        await db.rollback()
        raise await _which_is_taken(db, username) from None
    await db.refresh(user)
    return user


async def record_login(*, db: AsyncSession, user: User) -> None:
    """Stamp a login that did not go through a password check (a sign-up logs straight in).
    Password logins stamp themselves, in authsite/logins.py."""
    now = utcnow()
    await db.exec(update(User.__table__).where(User.__table__.c.id == user.id).values(last_login_at=now))
    await db.commit()
    set_committed_value(user, "last_login_at", now)


async def change_password(
    *, db: AsyncSession, hasher: PasswordHasher, user: User, current_password: str, new_password: str
) -> None:
    """The user's own change: needs the current password. Ends every session."""
    matches, _ = await hasher.verify(current_password, user.password_hash)
    if not matches:
        raise AccountError("current_password", WRONG_PASSWORD)
    await set_password(db=db, hasher=hasher, user=user, password=new_password)


async def set_password(*, db: AsyncSession, hasher: PasswordHasher, user: User, password: str) -> None:
    """New password; every session and pending reset link of the user ends with the old one."""
    if problem := rules.password_problem(password, user_inputs=[user.username, user.email or ""]):
        raise AccountError("password", problem)
    await store_password_hash(db=db, user_id=user.id, password_hash=await hasher.hash(password))
    await db.commit()


async def store_password_hash(*, db: AsyncSession, user_id: int, password_hash: str) -> None:
    """The one place a password changes, so nothing that trusted the old one survives it.
    The caller commits (reset uses it inside the transaction that spends the link)."""
    await db.exec(update(User).where(User.id == user_id).values(password_hash=password_hash))
    await sessions.end_user_sessions(db=db, user_id=user_id, commit=False)
    await db.exec(delete(PasswordReset).where(PasswordReset.user_id == user_id))


async def update_profile(
    *,
    db: AsyncSession,
    hasher: PasswordHasher,
    user: User,
    first_name: str,
    last_name: str,
    email: str | None,
    current_password: str = "",
) -> None:
    """Names are free to change; a new email needs the current password, since
    whoever controls the email can reset the password."""
    for field, value in (("first_name", first_name), ("last_name", last_name)):
        if problem := rules.name_problem(value):
            raise AccountError(field, problem)
    email = _checked_email(email)
    if (email or None) != user.email:
        matches, _ = await hasher.verify(current_password, user.password_hash)
        if not matches:
            raise AccountError("current_password", WRONG_PASSWORD)
        if email and (other := await get_user_by_email(db, email)) and other.id != user.id:
            raise AccountError("email", EMAIL_TAKEN)
    user.first_name, user.last_name = first_name or None, last_name or None
    user.email, user.email_key = email, rules.email_key(email) if email else None
    db.add(user)
    try:
        await db.commit()
    except IntegrityError:
        await db.rollback()
        raise AccountError("email", EMAIL_TAKEN) from None


async def set_user_active(*, db: AsyncSession, user: User, active: bool) -> None:
    """Deactivating ends the user's sessions at once (the middleware also refuses them)."""
    user.is_active = active
    db.add(user)
    if not active:
        await sessions.end_user_sessions(db=db, user_id=user.id, commit=False)
    await db.commit()


def _checked_email(email: str | None) -> str | None:
    if not email or not email.strip():
        return None
    try:
        return rules.normalise_email(email.strip())
    except ValueError as exc:
        raise AccountError("email", str(exc)) from None


async def _skeleton_is_taken(db: AsyncSession, skeleton: str) -> bool:
    return (await db.exec(select(User.id).where(User.username_skeleton == skeleton))).first() is not None


async def _which_is_taken(db: AsyncSession, username: str) -> AccountError:
    if await get_user_by_username(db, username):
        return AccountError("username", USERNAME_TAKEN)
    if await _skeleton_is_taken(db, rules.username_skeleton(username)):
        return AccountError("username", USERNAME_CONFUSABLE)
    return AccountError("email", EMAIL_TAKEN)
