"""Rate limits kept in the database, so they hold across workers and hosts. No HTTP here.

Each counted request inserts a row into its buckets first and then counts the
bucket's rows in the window, so a burst of simultaneous requests cannot slip
past the limit together. A login that succeeds takes its row back."""

import hashlib
import math
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import partial

from sqlalchemy import Connection, Integer, bindparam, delete, func, insert, select

from authsite.db import Database
from authsite.models import ThrottleHit, utcnow
from authsite.rules import username_key

_hit = ThrottleHit.__table__

Buckets = list[tuple[str, "Limit"]]


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


# The counting itself: plain statements on a connection, so a login can run them inside its
# own unit of work (authsite/logins.py). Throttle below runs each as a unit of its own.
# The statements are built once: building one costs several times what running it does.

_ADD_HIT = insert(_hit).returning(_hit.c.id)
_IN_WINDOW = (_hit.c.bucket == bindparam("bucket")) & (_hit.c.created_at > bindparam("since"))
_COUNT = select(func.count()).where(_IN_WINDOW)
# The hit that decides when the bucket frees up: once it leaves the window, fewer than
# max_hits others remain. `other_than` leaves out the request's own hit (ids start at 1).
_BLOCKING = (
    select(_hit.c.created_at).where(_IN_WINDOW, _hit.c.id != bindparam("other_than"))
    .order_by(_hit.c.created_at.desc()).offset(bindparam("skip", type_=Integer)).limit(1)
)
_FORGIVE = delete(_hit).where(_hit.c.id.in_(bindparam("ids", expanding=True)))


def attempt(conn: Connection, buckets: Buckets, now: datetime) -> Attempt:
    """Count this request in every bucket; throttled if any is now over its limit.
    A throttled request takes its rows back, so waiting out Retry-After is
    enough (hammering while locked out does not push the wait further)."""
    result = Attempt()
    for name, limit in buckets:
        key = _key(name)
        hit_id = conn.execute(_ADD_HIT, {"bucket": key, "created_at": now}).scalar_one()
        result.hit_ids.append(hit_id)
        # Committed before counting: simultaneous requests then each count the others' rows.
        conn.commit()
        window = {"bucket": key, "since": now - limit.window}
        if conn.execute(_COUNT, window).scalar_one() > limit.max_hits:
            blocking = conn.execute(_BLOCKING, {**window, "other_than": hit_id, "skip": limit.max_hits - 1}).scalar()
            wait = _seconds_until(blocking + limit.window, now) if blocking else 1
            result.retry_after = max(result.retry_after or 0, wait)
    if result.is_throttled:
        forgive(conn, result.hit_ids)
        result.hit_ids = []
    return result


def is_over(conn: Connection, buckets: Buckets, now: datetime) -> int | None:
    """Retry-After if any bucket is already at its limit, counting nothing."""
    wait = None
    for name, limit in buckets:
        window = {"bucket": _key(name), "since": now - limit.window}
        blocking = conn.execute(_BLOCKING, {**window, "other_than": 0, "skip": limit.max_hits - 1}).scalar()
        if blocking is not None:
            wait = max(wait or 0, _seconds_until(blocking + limit.window, now))
    return wait


def count(conn: Connection, buckets: Buckets, now: datetime) -> None:
    """Record one hit in each bucket without checking (a failure found afterwards)."""
    for name, _ in buckets:
        conn.execute(_ADD_HIT, {"bucket": _key(name), "created_at": now})


def forgive(conn: Connection, hit_ids: list[int]) -> None:
    """Take back an attempt's rows (a login that turned out right)."""
    if hit_ids:
        conn.execute(_FORGIVE, {"ids": list(hit_ids)})


class Throttle:
    """The same, each call a unit of work of its own."""

    def __init__(self, database: Database):
        self.database = database

    async def attempt(self, buckets: Buckets) -> Attempt:
        return await self.database.run(partial(attempt, buckets=buckets, now=utcnow()))

    async def is_over(self, buckets: Buckets) -> int | None:
        return await self.database.run(partial(is_over, buckets=buckets, now=utcnow()))

    async def count(self, buckets: Buckets) -> None:
        await self.database.run(partial(count, buckets=buckets, now=utcnow()))

    async def forgive(self, hits: Attempt) -> None:
        if hits.hit_ids:
            await self.database.run(partial(forgive, hit_ids=hits.hit_ids))

    async def prune(self, *, older_than: timedelta) -> None:
        cutoff = utcnow() - older_than
        await self.database.run(lambda conn: conn.execute(delete(_hit).where(_hit.c.created_at < cutoff)))


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
