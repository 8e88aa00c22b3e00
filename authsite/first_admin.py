"""The first account, made in the browser from a one-time link that `run.py` prints while the site
has no user at all. No HTTP here.

One link per site, one row (id 1): a random nonce, the SHA-256 of the link's token (the same
hash as sessions and reset links) and an expiry. The token is an HMAC of the nonce under a key
derived from the secret key, so any process that starts while the link is live can print it
again: workers, a restart, two servers starting at once on one database (the first insert wins,
the others read it back and print the same link). The table alone opens nothing.

Printed again at each start, rather than replaced: a restart must not kill the link the operator
has just opened in a browser, and processes starting together must not print each other's dead
links. After an hour, or under another secret key, the next start replaces it.
"""

import base64
import hashlib
import hmac
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import delete, insert, select
from sqlalchemy.exc import IntegrityError
from sqlmodel.ext.asyncio.session import AsyncSession

from authsite import accounts, tokens
from authsite.db import Database
from authsite.models import SetupLink, User, utcnow
from authsite.passwords import PasswordHasher

SETUP_LINK_LIFETIME = timedelta(hours=1)
FIRST_ADMIN_SCOPES = ("authenticated", "admin", "super")
SETUP_PATH = "/auth/setup/"
LINK_ID = 1
# Insert-if-absent, read back: a start that loses a race tries again, a few times at most.
ATTEMPTS = 3

_link = SetupLink.__table__
_user = User.__table__
_ANY_USER = select(_user.c.id).limit(1)


@dataclass(frozen=True)
class Link:
    token: str
    expires_at: datetime


class SetupLinks:
    """The setup link's token, its check, and the account it makes."""

    def __init__(self, *, database: Database, secret_key: str):
        self.database = database
        # A key of its own, derived from the secret key (HMAC as the PRF): never the key itself.
        self._key = hmac.new(secret_key.encode(), b"authsite setup link", hashlib.sha256).digest()

    def _token_for(self, nonce: str) -> str:
        digest = hmac.new(self._key, nonce.encode(), hashlib.sha256).digest()
        return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()  # 43 characters, 256 bits

    def _is_ours(self, row) -> bool:
        """Whether the row's token is the one this secret key derives (not so after a key change)."""
        return hmac.compare_digest(tokens.hash_token(self._token_for(row.nonce)), row.token_hash)

    async def current_link(self) -> Link | None:
        """The live link while the site has no user (made now if there is none); None once one exists."""
        async with self.database.sessionmaker() as db:
            for _ in range(ATTEMPTS):
                if await _has_users(db):
                    await db.exec(delete(_link))  # a dead link leaves nothing behind
                    await db.commit()
                    return None
                row = (await db.exec(select(_link).where(_link.c.id == LINK_ID))).first()
                await db.rollback()  # end the read: the write below starts a transaction of its own
                now = utcnow()
                if row is not None and row.expires_at > now and self._is_ours(row):
                    return Link(self._token_for(row.nonce), row.expires_at)
                if link := await self._replace(db, old=row, now=now):
                    return link
        raise RuntimeError("could not agree on a setup link with the other starting processes")

    async def _replace(self, db: AsyncSession, *, old, now: datetime) -> Link | None:
        """A new link in place of `old` (expired, or made under another key); None if another start got there first."""
        if old is not None:
            await db.exec(delete(_link).where(_link.c.id == LINK_ID, _link.c.nonce == old.nonce))
        nonce = tokens.new_token()
        token, expires_at = self._token_for(nonce), now + SETUP_LINK_LIFETIME
        try:
            await db.exec(insert(_link).values(id=LINK_ID, nonce=nonce, token_hash=tokens.hash_token(token),
                                               created_at=now, expires_at=expires_at))
            await db.commit()
        except IntegrityError:
            await db.rollback()
            return None
        return Link(token, expires_at)

    async def is_live(self, token: str) -> bool:
        """Whether `token` opens the setup page now: one indexed read, no password work."""
        if not tokens.is_well_formed(token):
            return False
        async with self.database.sessionmaker() as db:
            return await _is_live(db, token)

    async def create_first_admin(
        self, *, hasher: PasswordHasher, token: str, username: str, password: str, password_confirm: str,
        email: str | None, email_required: bool,
    ) -> User | None:
        """The first account, with every permission, logged in by the caller; None if the link is not
        live. Refused fields raise AccountError, all at once, as at sign-up; the link then stays."""
        if not await self.is_live(token):
            return None  # before any password work: a wrong token costs one read
        async with self.database.sessionmaker() as db:
            # The DELETE claims the link and holds it to the commit: of two people racing it, the
            # database lets one delete the row and the other finds nothing. On SQLite the claim also
            # holds the write lock, so no account can appear between the check below and ours.
            claimed = await db.exec(delete(_link).where(
                _link.c.token_hash == tokens.hash_token(token), _link.c.expires_at > utcnow(),
            ).returning(_link.c.id))
            if claimed.first() is None or await _has_users(db):
                await db.rollback()
                return None
            try:
                # Commits the claim with the account, or (refused) leaves both to the rollback.
                user = await accounts.create_user(
                    db=db, hasher=hasher, username=username, password=password, password_confirm=password_confirm,
                    email=email, email_required=email_required, scopes=FIRST_ADMIN_SCOPES,
                )
            except accounts.AccountError:
                await db.rollback()
                raise
            if user.email:
                # Only the operator sees the printed link: their word stands for the address, as
                # with `run.py create-user --email` (and the only admin is never locked out by it).
                user.email_confirmed_at = utcnow()
                db.add(user)
                await db.commit()
            await accounts.record_login(db=db, user=user)
        return user


async def setup_link_lines(links: SetupLinks, *, base_url: str) -> list[str]:
    """What the start prints while the site has no user: the link, and how long it lasts; else nothing."""
    link = await links.current_link()
    if link is None:
        return []
    until = link.expires_at.strftime("%H:%M UTC")
    return [
        f"Create the first account: {base_url}{SETUP_PATH}{link.token}",
        f"(the site has no user yet: this link works once, until {until}, and each start prints it until "
        "an account exists)",
    ]


async def _has_users(db: AsyncSession) -> bool:
    return (await db.exec(_ANY_USER)).first() is not None


async def _is_live(db: AsyncSession, token: str) -> bool:
    found = await db.exec(select(_link.c.id).where(
        _link.c.token_hash == tokens.hash_token(token), _link.c.expires_at > utcnow(),
    ))
    return found.first() is not None and not await _has_users(db)
