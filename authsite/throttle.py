"""Rate limits kept in the database, so they hold across workers and hosts. No HTTP here.

Each counted request inserts a row into its buckets first and then counts the
bucket's rows in the window, so a burst of simultaneous requests cannot slip
past the limit together. A login that succeeds takes its row back."""

import hashlib
import math
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import delete, func, insert
from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlmodel import col, select

from authsite.models import ThrottleHit, utcnow
from authsite.rules import username_key


@dataclass(frozen=True)
class Limit:
    max_hits: int
    window: timedelta


@dataclass
class Attempt:
    """The rows one request added, and how long to wait if it went over a limit."""

    hit_ids: list[int] = field(default_factory=list)
    retry_after: int | None = None

    @property
    def is_throttled(self) -> bool:
        return self.retry_after is not None


class Throttle:
    def __init__(self, sessionmaker: async_sessionmaker):
        self.sessionmaker = sessionmaker

    async def attempt(self, buckets: list[tuple[str, Limit]]) -> Attempt:
        """Count this request in every bucket; throttled if any is now over its limit.
        A throttled request takes its rows back, so waiting out Retry-After is
        enough (hammering while locked out does not push the wait further)."""
        now = utcnow()
        attempt = Attempt()
        async with self.sessionmaker() as db:
            for name, limit in buckets:
                key = _key(name)
                result = await db.exec(insert(ThrottleHit).values(bucket=key, created_at=now).returning(ThrottleHit.id))
                attempt.hit_ids.append(result.scalar_one())
                await db.commit()
                in_window = (ThrottleHit.bucket == key) & (col(ThrottleHit.created_at) > now - limit.window)
                count = (await db.exec(select(func.count()).where(in_window))).one()
                if count > limit.max_hits:
                    # Free again once fewer than max_hits others remain in the window.
                    blocking = (await db.exec(
                        select(ThrottleHit.created_at).where(in_window, col(ThrottleHit.id) != attempt.hit_ids[-1])
                        .order_by(col(ThrottleHit.created_at).desc()).offset(limit.max_hits - 1).limit(1)
                    )).first()
                    wait = _seconds_until(blocking + limit.window, now) if blocking else 1
                    attempt.retry_after = max(attempt.retry_after or 0, wait)
        if attempt.is_throttled:
            await self.forgive(attempt)
            attempt.hit_ids = []
        return attempt

    async def is_over(self, buckets: list[tuple[str, Limit]]) -> int | None:
        """Retry-After if any bucket is already at its limit, counting nothing."""
        now, wait = utcnow(), None
        async with self.sessionmaker() as db:
            for name, limit in buckets:
                in_window = (ThrottleHit.bucket == _key(name)) & (col(ThrottleHit.created_at) > now - limit.window)
                blocking = (await db.exec(
                    select(ThrottleHit.created_at).where(in_window)
                    .order_by(col(ThrottleHit.created_at).desc()).offset(limit.max_hits - 1).limit(1)
                )).first()
                if blocking is not None:
                    wait = max(wait or 0, _seconds_until(blocking + limit.window, now))
        return wait

    async def count(self, buckets: list[tuple[str, Limit]]) -> None:
        """Record one hit in each bucket without checking (a failure found afterwards)."""
        now = utcnow()
        async with self.sessionmaker() as db:
            for name, _ in buckets:
                await db.exec(insert(ThrottleHit).values(bucket=_key(name), created_at=now))
            await db.commit()

    async def forgive(self, attempt: Attempt) -> None:
        """Take back an attempt's rows (a login that turned out right)."""
        if attempt.hit_ids:
            async with self.sessionmaker() as db:
                await db.exec(delete(ThrottleHit).where(col(ThrottleHit.id).in_(attempt.hit_ids)))
                await db.commit()

    async def prune(self, *, older_than: timedelta) -> None:
        async with self.sessionmaker() as db:
            await db.exec(delete(ThrottleHit).where(col(ThrottleHit.created_at) < utcnow() - older_than))
            await db.commit()


def _key(name: str) -> str:
    return hashlib.sha256(name.encode("utf-8", "backslashreplace")).hexdigest()


def _seconds_until(moment: datetime, now: datetime) -> int:
    return max(1, math.ceil((moment - now).total_seconds()))


# A person who forgot their password asks a few times; more is mail-bombing.
RESET_MAX_PER_ACCOUNT = 3
RESET_ACCOUNT_WINDOW = timedelta(hours=1)


@dataclass(frozen=True)
class Limits:
    login_account: Limit
    login_ip: Limit
    signup_ip: Limit
    reset_ip: Limit
    reset_account: Limit = Limit(RESET_MAX_PER_ACCOUNT, RESET_ACCOUNT_WINDOW)

    @classmethod
    def from_settings(cls, settings) -> "Limits":
        login_window = timedelta(seconds=settings.login_window_seconds)
        return cls(
            login_account=Limit(settings.login_max_failures, login_window),
            login_ip=Limit(settings.login_ip_max_failures, login_window),
            signup_ip=Limit(settings.signup_max_per_ip, timedelta(seconds=settings.signup_window_seconds)),
            reset_ip=Limit(settings.reset_max_per_ip, timedelta(seconds=settings.reset_window_seconds)),
        )

    @property
    def longest_window(self) -> timedelta:
        return max(limit.window for limit in (self.login_account, self.login_ip, self.signup_ip,
                                              self.reset_ip, self.reset_account))

    def login(self, username: str, ip: str | None) -> list[tuple[str, Limit]]:
        # Keyed by name AND address: an attacker hammering one account from
        # their machine cannot lock its owner out everywhere.
        return [(f"login:{username_key(username)}|{ip}", self.login_account)]

    def login_address(self, ip: str | None) -> list[tuple[str, Limit]]:
        # Failures from one address across all names (password spraying). Only
        # failures are counted, after the fact, so many people behind one NAT
        # logging in at once are never refused for succeeding together.
        return [(f"login-ip:{ip}", self.login_ip)]

    def signup(self, ip: str | None) -> list[tuple[str, Limit]]:
        return [(f"signup-ip:{ip}", self.signup_ip)]

    def reset(self, login: str, ip: str | None) -> list[tuple[str, Limit]]:
        return [(f"reset-ip:{ip}", self.reset_ip), (f"reset:{username_key(login)}", self.reset_account)]

    def reset_mail(self, user_id: int) -> list[tuple[str, Limit]]:
        # However the account is named (username, email), it gets at most this
        # many mails; past it the mail is skipped silently, since a 429 here
        # would tell which name and which address are one account.
        return [(f"reset-mail:{user_id}", self.reset_account)]
