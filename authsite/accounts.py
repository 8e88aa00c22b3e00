"""Accounts: creating users, checking and changing passwords, profiles. No HTTP here."""

from collections.abc import Awaitable, Callable, Iterable
from typing import Protocol

from sqlalchemy import delete, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm.attributes import set_committed_value
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from authsite import rules, sessions, strength
from authsite.email_ownership import CHANGE as EMAIL_CHANGE
from authsite.models import DEFAULT_SCOPES, PasswordReset, PendingStep, User, utcnow
from authsite.passwords import PasswordHasher


class Confirmation(Protocol):
    confirmed: bool
    retry_after: int | None

USERNAME_TAKEN = "That username is taken."
USERNAME_CONFUSABLE = "That username looks too much like one that is taken. Choose another."
EMAIL_TAKEN = "That email address belongs to another account."
WRONG_PASSWORD = "That is not your current password."
CURRENT_PASSWORD_FOR_EMAIL = "Enter your current password to change your email."
CHOOSE_USERNAME = "Choose a username."
CHOOSE_PASSWORD = "Choose a password."
EMAIL_REQUIRED = "Enter your email address: this site confirms it before you log in."
CHANGED_MEANWHILE = (
    "Your password was changed by another request meanwhile, so this change was not made. "
    "Log in again with the password now in force."
)

# Checks a logged-in user's password typed again (`Logins.confirm_password`): wrong ones count
# like failed logins, so a stolen session cannot guess its way to the password.
Confirm = Callable[[User, str], Awaitable[Confirmation]]


class AccountError(Exception):
    """A request the domain refuses, with the form field it concerns. A check of a whole form
    refuses it once with every field's message in `errors`, in form order; `field` is the first."""

    def __init__(self, field: str, message: str, *, errors: dict[str, str] | None = None):
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message
        self.errors = errors or {field: message}

    @classmethod
    def of(cls, errors: dict[str, str]) -> "AccountError":
        field, message = next(iter(errors.items()))
        return cls(field, message, errors=errors)


class ChangedMeanwhile(AccountError):
    """The password this change was authorised by has been replaced since (a 409)."""

    def __init__(self):
        super().__init__("form", CHANGED_MEANWHILE)


class Throttled(Exception):
    """Too many wrong passwords for this account from this client: answer 429."""

    def __init__(self, retry_after: int):
        super().__init__(f"retry after {retry_after} s")
        self.retry_after = retry_after


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
    password_confirm: str | None = None,
    email_required: bool = False,
) -> User:
    """A new account; raises AccountError with every field that is wrong (see `new_account_problems`)."""
    problems = await new_account_problems(db=db, username=username, password=password, email=email,
                                          password_confirm=password_confirm, email_required=email_required)
    if problems:
        raise AccountError.of(problems)
    email = checked_email(email)
    skeleton = rules.username_skeleton(username)
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


async def new_account_problems(
    *, db: AsyncSession, username: str, password: str, email: str | None = None,
    password_confirm: str | None = None, email_required: bool = False,
) -> dict[str, str]:
    """Why each field of a new account is refused, in form order; empty when all are fine.
    Every field is judged, so a sign-up form learns all its problems in one go. This says no
    more than checking one field at a time did: a taken name or address was always reported
    to whoever sent it with the other fields right."""
    problems = {}
    if problem := await _new_username_problem(db, username):
        problems["username"] = problem
    if problem := await _new_email_problem(db, email, required=email_required):
        problems["email"] = problem
    # Judged also when other fields are wrong, so that they all show at once.
    problems |= await new_password_problems(password, password_confirm, user_inputs=[username, (email or "").strip()])
    return problems


async def new_password_problems(
    password: str, confirm: str | None, *, user_inputs: list[str],
    fields: tuple[str, str] = ("password", "password_confirm"),
) -> dict[str, str]:
    """Why a new password, and its confirmation when one was typed (`confirm` not None), are refused,
    by field (`fields` names the two). The strength is judged here once: it costs real CPU."""
    field, confirm_field = fields
    problems = {}
    if not password:
        problems[field] = CHOOSE_PASSWORD
    elif problem := await strength.password_problem(password, user_inputs=user_inputs):
        problems[field] = problem
    if password and confirm is not None and password != confirm:
        problems[confirm_field] = rules.PASSWORDS_DIFFER
    return problems


async def _new_username_problem(db: AsyncSession, username: str) -> str | None:
    if not username:
        return CHOOSE_USERNAME
    if problem := rules.username_problem(username):
        return problem
    return await _username_taken(db, username)


async def _username_taken(db: AsyncSession, username: str) -> str | None:
    """TAKEN for the name itself, CONFUSABLE for a look-alike. One statement, so one snapshot: as two
    queries, a sign-up committed between them read as a look-alike of itself."""
    key, skeleton = rules.username_key(username), rules.username_skeleton(username)
    keys = (await db.exec(select(User.username_key).where(
        (User.username_key == key) | (User.username_skeleton == skeleton)
    ))).all()
    if key in keys:
        return USERNAME_TAKEN
    return USERNAME_CONFUSABLE if keys else None


async def _new_email_problem(db: AsyncSession, email: str | None, *, required: bool) -> str | None:
    if not email or not email.strip():
        return EMAIL_REQUIRED if required else None
    try:
        email = rules.normalise_email(email.strip())
    except ValueError as exc:
        return str(exc)
    return EMAIL_TAKEN if await get_user_by_email(db, email) else None


async def record_login(*, db: AsyncSession, user: User) -> None:
    """Stamp a login that did not go through a password check (a sign-up logs straight in).
    Password logins stamp themselves, in authsite/logins.py."""
    now = utcnow()
    await db.exec(update(User.__table__).where(User.__table__.c.id == user.id).values(last_login_at=now))
    await db.commit()
    set_committed_value(user, "last_login_at", now)


async def change_password(
    *, db: AsyncSession, hasher: PasswordHasher, user: User, current_password: str, new_password: str,
    confirm: Confirm,
) -> None:
    """The user's own change: needs the current password. Ends every session. Of changes sent
    at once with the same current password exactly one is made; the others raise ChangedMeanwhile."""
    await _confirm(confirm, user, current_password)
    await set_password(db=db, hasher=hasher, user=user, password=new_password, checked_hash=user.password_hash)


async def set_password(
    *, db: AsyncSession, hasher: PasswordHasher, user: User, password: str, checked_hash: str | None = None
) -> None:
    """New password; every session and pending reset link of the user ends with the old one.
    With `checked_hash` (the hash a current password was checked against) the change is made
    only if the account still has it."""
    if problem := await strength.password_problem(password, user_inputs=[user.username, user.email or ""]):
        raise AccountError("password", problem)
    password_hash = await hasher.hash(password)
    if not await store_password_hash(db=db, user_id=user.id, password_hash=password_hash, checked_hash=checked_hash):
        await db.rollback()
        raise ChangedMeanwhile()
    await db.commit()
    set_committed_value(user, "password_hash", password_hash)


async def store_password_hash(
    *, db: AsyncSession, user_id: int, password_hash: str, checked_hash: str | None = None
) -> bool:
    """The one place a password changes, so nothing that trusted the old one survives it.
    False (nothing changed) if `checked_hash` is given and the account no longer has it: the
    UPDATE waits for a racing change's row lock and then finds the hash replaced, so a change
    authorised by a password that has just been replaced never lands (a lost update otherwise).
    The caller commits (reset uses it inside the transaction that spends the link)."""
    statement = update(User).where(User.id == user_id).values(password_hash=password_hash)
    if checked_hash is not None:
        statement = statement.where(User.password_hash == checked_hash)
    if (await db.exec(statement)).rowcount != 1:
        return False
    await sessions.end_user_sessions(db=db, user_id=user_id, commit=False)
    await db.exec(delete(PasswordReset).where(PasswordReset.user_id == user_id))
    # An email change waiting for its link was asked for with the old password: whoever knew it
    # must not move the account's mail (and with it its resets) once the owner has answered.
    await db.exec(delete(PendingStep).where(PendingStep.user_id == user_id, PendingStep.purpose == EMAIL_CHANGE))
    return True


async def update_profile(
    *,
    db: AsyncSession,
    user: User,
    first_name: str,
    last_name: str,
    email: str | None,
    current_password: str = "",
    confirm: Confirm,
    email_now: bool = True,
) -> None:
    """Names are free to change; a new email needs the current password, since
    whoever controls the email can reset the password. `email_now=False`: a new address is
    checked (password, free) but not stored; the caller makes it a pending change
    (authsite/email_ownership.py). Removing the address always takes effect at once."""
    for field, value in (("first_name", first_name), ("last_name", last_name)):
        if problem := rules.name_problem(value):
            raise AccountError(field, problem)
    email = checked_email(email)
    if (email or None) != user.email:
        if not current_password:
            # Nothing typed is not a guess: say what to do, and count no failed check.
            raise AccountError("current_password", CURRENT_PASSWORD_FOR_EMAIL)
        await _confirm(confirm, user, current_password)
        if email and (other := await get_user_by_email(db, email)) and other.id != user.id:
            raise AccountError("email", EMAIL_TAKEN)
    moves = (email or None) != user.email and (email_now or not email)
    if moves:
        # A pending link went to the old address, which may be exactly what the owner is leaving.
        await db.exec(delete(PasswordReset).where(PasswordReset.user_id == user.id))
        user.email, user.email_key = email, rules.email_key(email) if email else None
        user.email_confirmed_at = None
    user.first_name, user.last_name = first_name or None, last_name or None
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
        # Gone, not just refused while inactive: reactivating brings no old link back.
        await db.exec(delete(PasswordReset).where(PasswordReset.user_id == user.id))
    await db.commit()


async def _confirm(confirm: Confirm, user: User, password: str) -> None:
    confirmation = await confirm(user, password)
    if confirmation.retry_after is not None:
        raise Throttled(confirmation.retry_after)
    if not confirmation.confirmed:
        raise AccountError("current_password", WRONG_PASSWORD)


def checked_email(email: str | None) -> str | None:
    if not email or not email.strip():
        return None
    try:
        return rules.normalise_email(email.strip())
    except ValueError as exc:
        raise AccountError("email", str(exc)) from None


async def _which_is_taken(db: AsyncSession, username: str) -> AccountError:
    if problem := await _username_taken(db, username):
        return AccountError("username", problem)
    return AccountError("email", EMAIL_TAKEN)
