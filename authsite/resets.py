"""Password-reset links: single use, one hour, stored hashed. No HTTP here."""

from datetime import timedelta

from sqlalchemy import delete
from sqlalchemy.orm import aliased
from sqlmodel import select
from sqlmodel.ext.asyncio.session import AsyncSession

from authsite import accounts, tokens, user_admin
from authsite.models import PasswordReset, User, utcnow
from authsite.passwords import PasswordHasher

RESET_LIFETIME = timedelta(hours=1)


async def create_reset_token(*, db: AsyncSession, user: User, issued_by: int | None = None) -> str:
    """A new link token for `user` (returned once, never stored); `issued_by`: the admin making it."""
    token = tokens.new_token()
    now = utcnow()
    db.add(
        PasswordReset(
            token_hash=tokens.hash_token(token), user_id=user.id, created_at=now, expires_at=now + RESET_LIFETIME,
            issued_by=issued_by,
        )
    )
    await db.commit()
    return token


async def get_user_by_reset_token(*, db: AsyncSession, token: str) -> User | None:
    """The active user a live link belongs to, or None for a bad, used or expired one."""
    if not tokens.is_well_formed(token):
        return None
    issuer = aliased(User)
    statement = (
        select(User, PasswordReset.issued_by, issuer.scopes, issuer.is_active)
        .join(PasswordReset, PasswordReset.user_id == User.id)
        .outerjoin(issuer, issuer.id == PasswordReset.issued_by)
        .where(PasswordReset.token_hash == tokens.hash_token(token), PasswordReset.expires_at > utcnow())
        .where(User.is_active)
    )
    row = (await db.exec(statement)).first()
    if row is None:
        return None
    user, issued_by, issuer_scopes, issuer_active = row
    # An admin's link is only as good as the admin's standing today: the rule that let them
    # make it is applied again to both accounts as they are now (issue 12).
    if issued_by is not None and not user_admin.is_live_reset_issuer(
        issuer_id=issued_by, issuer_scopes=issuer_scopes or (), issuer_active=bool(issuer_active), user=user
    ):
        return None
    return user


async def reset_password(*, db: AsyncSession, hasher: PasswordHasher, token: str, password: str,
                         password_confirm: str | None = None) -> User | None:
    """Spend the link and set the password in one transaction; None if the link is not live.
    A refused password raises AccountError with the password's and the confirmation's problems.

    The DELETE ... RETURNING claims the link: of two simultaneous uses the
    database lets exactly one delete the row, and only that one goes on."""
    user = await get_user_by_reset_token(db=db, token=token)
    if user is None:
        return None
    user_inputs = [user.username, user.email or ""]
    if problems := await accounts.new_password_problems(password, password_confirm, user_inputs=user_inputs):
        raise accounts.AccountError.of(problems)
    password_hash = await hasher.hash(password)
    claimed = await db.exec(
        delete(PasswordReset)
        .where(PasswordReset.token_hash == tokens.hash_token(token), PasswordReset.expires_at > utcnow())
        .returning(PasswordReset.user_id)
    )
    if claimed.first() is None:
        await db.rollback()
        return None
    await accounts.store_password_hash(db=db, user_id=user.id, password_hash=password_hash)
    await db.commit()
    return user


async def purge_expired_resets(*, db: AsyncSession) -> None:
    await db.exec(delete(PasswordReset).where(PasswordReset.expires_at <= utcnow()))
    await db.commit()
