"""Rate limits kept in the database, so they hold across workers and hosts. No HTTP here.

Two kinds of bucket. Sign-ups and reset requests count every request (`attempt`). Logins count
only failures, but reserve their place before the password is hashed (`reserve`): a reservation
is a pending row, a failure settles it into a plain one, a success deletes it. A bucket admits an
attempt while its failures plus the attempts still being checked stay within the limit, so a
burst of simultaneous wrong passwords gets at most the limit hashed, and right passwords sent
together wait a moment for their turn instead of being refused (issue 12, items 2 and 3).

Every counted request inserts its row first and only then counts the bucket (committed in
between), so simultaneous requests each see the others and cannot slip past the limit together."""

import hashlib
import ipaddress
import math
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import lru_cache, partial

from sqlalchemy import Connection, Integer, bindparam, delete, func, insert, literal, select, union_all, update

from authsite.db import Database, each_statement_committed
from authsite.models import ThrottleHit, utcnow
from authsite.rules import email_key, normalise_email, username_key

_hit = ThrottleHit.__table__

Buckets = list[tuple[str, "Limit"]]

# A reservation not settled within this long (its worker died mid-login) no longer holds a place.
PENDING_LIFETIME = timedelta(seconds=60)
# IPv6 clients are counted by the /64 network they come from: one customer of an ISP or a cloud
# holds a whole /64, so counting single addresses would give them 2**64 fresh buckets.
IPV6_CLIENT_PREFIX = 64


@dataclass(frozen=True)
class Limit:
    max_hits: int
    window: timedelta


@dataclass
class Attempt:
    """The rows one request added, and how long to wait if it went over a limit."""

    hit_ids: list[int] = field(default_factory=list)
    retry_after: int | None = None
    # Set when the buckets were full of attempts still being checked, not of failures.
    busy: bool = False
    # The name of the first bucket that was over its limit (for noting the burst once).
    throttled_by: str | None = None

    @property
    def is_throttled(self) -> bool:
        return self.retry_after is not None


# The counting itself: plain statements on a connection, so a login can run them inside its
# own unit of work (authsite/logins.py). Throttle below runs each as a unit of its own.
# The statements are built once: building one costs several times what running it does.

# Several rows at once become one INSERT ... VALUES (...), (...) RETURNING (SQLAlchemy's insertmanyvalues).
_ADD_HIT = insert(_hit).returning(_hit.c.id)
_IN_WINDOW = (_hit.c.bucket == bindparam("bucket")) & (_hit.c.created_at > bindparam("since"))
_COUNT = select(func.count()).where(_IN_WINDOW)
_SETTLED = _IN_WINDOW & _hit.c.pending.is_(False)
# A bucket's settled failures and its attempts in flight, counted in ONE statement, so in one
# snapshot: counted apart, attempts settling between the two counts were in neither (on Postgres,
# under load, seven guesses got through a limit of six). Every bucket of a request is counted in
# that one statement too (`_count_reserved`): each statement is a round trip, and on Postgres each
# round trip a turn of the event loop that serves pages (issue 18).
def _counted_bucket(index: int):
    return select(
        literal(index, Integer),
        func.count().filter(_hit.c.pending.is_(False), _hit.c.created_at > bindparam(f"since_{index}")),
        func.count().filter(_hit.c.pending.is_(True), _hit.c.created_at > bindparam("pending_since")),
    ).where(_hit.c.bucket == bindparam(f"bucket_{index}"))


@lru_cache(maxsize=8)
def _count_reserved(buckets: int):
    """(bucket's index, its failures in its window, its attempts in flight) for each of `buckets`."""
    parts = [_counted_bucket(index) for index in range(buckets)]
    return union_all(*parts) if len(parts) > 1 else parts[0]


# The hit that decides when the bucket frees up: once it leaves the window, fewer than
# max_hits others remain.
_BLOCKING = (
    select(_hit.c.created_at).where(_SETTLED)
    .order_by(_hit.c.created_at.desc()).offset(bindparam("skip", type_=Integer)).limit(1)
)
_FORGIVE = delete(_hit).where(_hit.c.id.in_(bindparam("ids", expanding=True)))
_SETTLE = update(_hit).where(_hit.c.id.in_(bindparam("ids", expanding=True))).values(pending=False)


def attempt(conn: Connection, buckets: Buckets, now: datetime) -> Attempt:
    """Count this request in every bucket; throttled if any is now over its limit.
    A throttled request takes its rows back, so waiting out Retry-After is
    enough (hammering while locked out does not push the wait further)."""
    result = Attempt()
    with each_statement_committed(conn):
        for name, limit in buckets:
            key = _key(name)
            hit_id = conn.execute(_ADD_HIT, {"bucket": key, "created_at": now, "pending": False}).scalar_one()
            result.hit_ids.append(hit_id)
            # Committed before counting: simultaneous requests then each count the others' rows.
            conn.commit()
            window = {"bucket": key, "since": now - limit.window}
            if conn.execute(_COUNT, window).scalar_one() > limit.max_hits:
                _note_throttled(conn, result, name, window, limit, now)
        if result.is_throttled:
            forgive(conn, result.hit_ids)
            result.hit_ids = []
    return result


def reserve(conn: Connection, buckets: Buckets, now: datetime) -> Attempt:
    """Hold a place for an attempt whose outcome is not known yet (a password being checked).

    Throttled when a bucket's settled failures reach its limit; `busy` when they do not, but
    together with the attempts still in flight they would: the caller waits and asks again.
    Either way the request's rows are taken back."""
    result = Attempt()
    keys = [_key(name) for name, _ in buckets]
    with each_statement_committed(conn):
        added = conn.execute(_ADD_HIT, [{"bucket": key, "created_at": now, "pending": True} for key in keys])
        result.hit_ids = list(added.scalars())
        conn.commit()  # before counting, as in `attempt` (a no-op where each statement commits anyway)
        windows = {f"since_{index}": now - limit.window for index, (_, limit) in enumerate(buckets)}
        bounds = {f"bucket_{index}": key for index, key in enumerate(keys)} | windows
        counts = conn.execute(_count_reserved(len(buckets)), {**bounds, "pending_since": now - PENDING_LIFETIME})
        for index, failures, in_flight in sorted(counts):
            name, limit = buckets[index]
            if failures >= limit.max_hits:
                window = {"bucket": keys[index], "since": windows[f"since_{index}"]}
                _note_throttled(conn, result, name, window, limit, now)
                continue
            if failures + in_flight > limit.max_hits:
                result.busy = True
        if result.is_throttled or result.busy:
            forgive(conn, result.hit_ids)
            result.hit_ids = []
    return result


def _note_throttled(conn: Connection, result: Attempt, name: str, window: dict, limit: Limit,
                    now: datetime) -> None:
    blocking = conn.execute(_BLOCKING, {**window, "skip": limit.max_hits - 1}).scalar()
    wait = _seconds_until(blocking + limit.window, now) if blocking else 1
    result.retry_after = max(result.retry_after or 0, wait)
    result.throttled_by = result.throttled_by or name


def settle(conn: Connection, hit_ids: list[int]) -> None:
    """A reserved attempt failed: its rows now count as failures."""
    if hit_ids:
        conn.execute(_SETTLE, {"ids": list(hit_ids)})


def forgive(conn: Connection, hit_ids: list[int]) -> None:
    """Take back a request's rows (a login that turned out right, or one that never ran)."""
    if hit_ids:
        conn.execute(_FORGIVE, {"ids": list(hit_ids)})


def is_first_in_window(conn: Connection, name: str, window: timedelta, now: datetime) -> bool:
    """True once per `name` and window: for noting a burst (of throttled attempts, say) once."""
    return not attempt(conn, [(f"noted:{name}", Limit(1, window))], now).is_throttled


class Throttle:
    """The same, each call a unit of work of its own."""

    def __init__(self, database: Database):
        self.database = database

    async def attempt(self, buckets: Buckets) -> Attempt:
        return await self.database.run(partial(attempt, buckets=buckets, now=utcnow()))

    async def forgive(self, hits: Attempt) -> None:
        if hits.hit_ids:
            await self.database.run(partial(forgive, hit_ids=hits.hit_ids))

    async def prune(self, *, older_than: timedelta) -> None:
        cutoff = utcnow() - older_than
        await self.database.run(lambda conn: conn.execute(delete(_hit).where(_hit.c.created_at < cutoff)))


@lru_cache(maxsize=4096)
def client_key(ip: str | None) -> str:
    """What a client is counted by: an IPv4 address as is (also when written as IPv6), an IPv6
    address by its /64 network; anything else (a test client's name) as given."""
    if ip is None:
        return "-"
    try:
        address = ipaddress.ip_address(ip)
    except ValueError:
        return ip
    if address.version == 6:
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        return str(ipaddress.ip_network(f"{address}/{IPV6_CLIENT_PREFIX}", strict=False))
    return str(address)


def _address_key(email: str) -> str:
    """One bucket for every spelling of one address (`ALICE@ｅｘａｍｐｌｅ.com` is alice@example.com
    to the account lookup, IDNA mapping its letters): its normalised key, or, for something that
    is no address, what was typed, case-folded."""
    try:
        return email_key(normalise_email(email))[:254]
    except ValueError:
        return email.casefold()[:254]


def _key(name: str) -> str:
    return hashlib.sha256(name.encode("utf-8", "backslashreplace")).hexdigest()


def _seconds_until(moment: datetime, now: datetime) -> int:
    return max(1, math.ceil((moment - now).total_seconds()))


# A person who forgot their password asks a few times; more is mail-bombing.
RESET_MAX_PER_ACCOUNT = 3
RESET_ACCOUNT_WINDOW = timedelta(hours=1)
# New passwords judged for one account (on its reset links and its account page): a person
# tries a few; judging one costs real CPU, so an endless stream is refused.
NEW_PASSWORD_TRIES = 10
NEW_PASSWORD_WINDOW = timedelta(minutes=15)
# Wrong second-factor codes for one account, from anywhere: someone who has the password and many
# addresses still gets only this many guesses at a 6-digit code per window (RFC 6238, 5.2). The
# owner's own browser (its device cookie) is counted apart, so this cannot lock them out.
SECOND_FACTOR_FAILURES = 10
SECOND_FACTOR_WINDOW = timedelta(minutes=15)


@dataclass(frozen=True)
class Limits:
    login_account: Limit
    login_ip: Limit
    signup_ip: Limit
    reset_ip: Limit
    reset_account: Limit = Limit(RESET_MAX_PER_ACCOUNT, RESET_ACCOUNT_WINDOW)
    new_password: Limit = Limit(NEW_PASSWORD_TRIES, NEW_PASSWORD_WINDOW)
    second_factor_account: Limit = Limit(SECOND_FACTOR_FAILURES, SECOND_FACTOR_WINDOW)

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
                                              self.reset_ip, self.reset_account, self.new_password,
                                              self.second_factor_account))

    def login(self, username: str, ip: str | None) -> list[tuple[str, Limit]]:
        # Keyed by name AND address: an attacker hammering one account from
        # their machine cannot lock its owner out everywhere.
        return [(f"login:{username_key(username)}|{client_key(ip)}", self.login_account)]

    def login_device(self, nonce: str) -> list[tuple[str, Limit]]:
        # A login vouched for by a device cookie: that cookie's own failures, wherever from.
        return [(f"login-device:{nonce}", self.login_account)]

    def login_address(self, ip: str | None) -> list[tuple[str, Limit]]:
        # Failures from one address across all names (password spraying). Only failures
        # count, so many people behind one NAT logging in at once are never refused.
        return [(f"login-ip:{client_key(ip)}", self.login_ip)]

    def second_factor(self, user_id: int) -> list[tuple[str, Limit]]:
        return [(f"second-factor:{user_id}", self.second_factor_account)]

    def second_factor_device(self, nonce: str) -> list[tuple[str, Limit]]:
        # A browser the device cookie vouches for is counted apart from strangers (so they cannot
        # lock the owner out), but at the same slow rate: a cookie an attacker got while they had
        # the password, before the owner turned the app on, buys no faster guessing.
        return [(f"second-factor-device:{nonce}", self.second_factor_account)]

    def signup(self, ip: str | None) -> list[tuple[str, Limit]]:
        return [(f"signup-ip:{client_key(ip)}", self.signup_ip)]

    def reset(self, login: str, ip: str | None) -> list[tuple[str, Limit]]:
        return [(f"reset-ip:{client_key(ip)}", self.reset_ip), (f"reset:{username_key(login)}", self.reset_account)]

    def new_password_tries(self, user_id: int) -> list[tuple[str, Limit]]:
        return [(f"new-password:{user_id}", self.new_password)]

    def verify_mail(self, user_id: int, ip: str | None) -> list[tuple[str, Limit]]:
        # Confirmation links asked for again: as few per account as reset mails, and per address.
        return [(f"verify-mail:{user_id}", self.reset_account), (f"verify-ip:{client_key(ip)}", self.reset_ip)]

    def code_mail(self, email: str, ip: str | None) -> list[tuple[str, Limit]]:
        # Sign-in codes asked for: per typed address (whether or not an account has it, so a 429
        # tells nothing) and per client address, at the rates of reset links.
        return [(f"code-ip:{client_key(ip)}", self.reset_ip), (f"code:{_address_key(email)}", self.reset_account)]

    def reset_mail(self, user_id: int) -> list[tuple[str, Limit]]:
        # However the account is named (username, email), it gets at most this
        # many mails; past it the mail is skipped silently, since a 429 here
        # would tell which name and which address are one account.
        return [(f"reset-mail:{user_id}", self.reset_account)]
