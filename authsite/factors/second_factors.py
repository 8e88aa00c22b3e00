"""An account's second factors in the database: setting up and removing an authenticator app,
recovery codes, and checking a code. No HTTP here.

Every change runs as one unit of work on a connection (`Database.run`) and ends by setting
`user.mfa_enabled` from the factor tables themselves, in the same transaction, so the flag the
login and the session lookup read can never disagree with them.
"""

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property
from datetime import datetime

from sqlalchemy import Connection, bindparam, delete, exists, func, insert, select, update
from sqlalchemy.exc import IntegrityError

from authsite import pending, sessions
from authsite.factors import recovery_codes, totp
from authsite.factors.passkeys import PASSKEY, count_passkeys, remove_all_passkeys, remove_passkey
from authsite.models import Authenticator, Passkey, RecoveryCode, User, utcnow
from authsite.sealing import Box, derive_key

log = logging.getLogger("authsite")

# A setup page's sealed secret opens for this long: time enough to find the phone and scan.
SETUP_LIFETIME_SECONDS = 30 * 60
TOTP = "totp"
RECOVERY_CODE = "recovery_code"

_totp = Authenticator.__table__
_code = RecoveryCode.__table__
_user = User.__table__
_passkey = Passkey.__table__

_AUTHENTICATOR = select(_totp.c.secret_sealed, _totp.c.created_at, _totp.c.last_used_at).where(
    _totp.c.user_id == bindparam("user_id")
)
_ADD_AUTHENTICATOR = insert(_totp)
_REMOVE_AUTHENTICATOR = delete(_totp).where(_totp.c.user_id == bindparam("user_id"))
# A step is accepted once: only a later one moves `last_step` on (and of two racing uses of one
# code, the second finds the step already taken once the first's row lock is released).
_USE_STEP = (
    update(_totp).where(_totp.c.user_id == bindparam("owner"), _totp.c.last_step < bindparam("step"))
    .values(last_step=bindparam("step"), last_used_at=bindparam("now"))
)
_CODES_LEFT = select(func.count()).select_from(_code).where(_code.c.user_id == bindparam("user_id"))
_REMOVE_CODES = delete(_code).where(_code.c.user_id == bindparam("user_id"))
_ADD_CODE = insert(_code)
_USE_CODE = delete(_code).where(_code.c.user_id == bindparam("user_id"), _code.c.code_hash == bindparam("code_hash"))
_SCOPES = select(_user.c.scopes).where(_user.c.id == bindparam("user_id"))
_HAS_FACTOR = exists().where(_totp.c.user_id == _user.c.id) | exists().where(_passkey.c.user_id == _user.c.id)
_REFRESH_FLAG = update(_user).where(_user.c.id == bindparam("user_id")).values(mfa_enabled=_HAS_FACTOR)


class FactorError(Exception):
    """A change the account's state does not allow, with a message for the person."""


@dataclass(frozen=True)
class Summary:
    """What the security page shows: never a secret."""

    totp_since: datetime | None
    totp_last_used: datetime | None
    recovery_codes_left: int
    passkeys: int = 0

    @property
    def has_totp(self) -> bool:
        return self.totp_since is not None

    @property
    def has_any(self) -> bool:
        return self.has_totp or self.passkeys > 0

    def describe(self) -> str:
        """"Authenticator app, 2 passkeys", or "none"."""
        return describe_factors(self.has_totp, self.passkeys)



@dataclass(frozen=True)
class Setup:
    """An authenticator app being set up: its secret travels sealed in the setup form."""

    secret: str
    uri: str
    sealed: str

    def __repr__(self) -> str:  # never the secret, not even in a traceback
        return "Setup(...)"

    @property
    def qr_svg(self) -> str:
        return totp.qr_svg(self.uri)

    @property
    def secret_grouped(self) -> str:
        return totp.grouped(self.secret)


class SecondFactors:
    """The keys second factors need, derived once from the site's secret key, and their statements."""

    def __init__(self, secret_key: str, *, issuer: str, clock: Callable[[], float] = time.time):
        self.issuer = issuer
        self.clock = clock  # what time it is for the codes (tests move it on)
        self._secret_key = secret_key

    # Derived on first use (see authsite/sealing.py), once per process.

    @cached_property
    def _secrets(self) -> Box:
        return Box(derive_key(self._secret_key, "totp secrets"))

    @cached_property
    def _setups(self) -> Box:
        return Box(derive_key(self._secret_key, "totp setup"))

    @cached_property
    def _codes(self) -> recovery_codes.CodeHasher:
        return recovery_codes.CodeHasher(derive_key(self._secret_key, "recovery codes"))

    # Reading

    def summary(self, conn: Connection, *, user_id: int) -> Summary:
        row = conn.execute(_AUTHENTICATOR, {"user_id": user_id}).first()
        left = conn.execute(_CODES_LEFT, {"user_id": user_id}).scalar_one()
        return Summary(row.created_at if row else None, row.last_used_at if row else None, left,
                       count_passkeys(conn, user_id=user_id))

    # Setting up an authenticator app

    def start_setup(self, *, user_id: int, username: str, bound_to: str) -> Setup:
        """A new secret for `user_id`, sealed for this session (`bound_to`) only; nothing is stored."""
        secret = totp.new_secret()
        sealed = self._setups.seal_for({"secret": secret}, context=_setup_context(user_id, bound_to),
                                       lifetime=SETUP_LIFETIME_SECONDS)
        return Setup(secret, totp.provisioning_uri(secret, account=username, issuer=self.issuer), sealed)

    def reopen_setup(self, sealed: str | None, *, user_id: int, username: str, bound_to: str) -> Setup | None:
        """The setup a form carried back, if it is this session's and not too old."""
        data = self._setups.open_for(sealed, context=_setup_context(user_id, bound_to))
        if data is None:
            return None
        secret = data["secret"]
        return Setup(secret, totp.provisioning_uri(secret, account=username, issuer=self.issuer), sealed)

    def finish_setup(self, conn: Connection, *, user_id: int, setup: Setup, code: str, now: datetime) -> list[str] | None:
        """Turn the app on if `code` is right for its secret; returns the new recovery codes (shown
        once), or None for a wrong code (nothing stored). Raises FactorError if one is on already."""
        step = totp.matching_step(setup.secret, code, at=self.clock())
        if step is None:
            return None
        sealed = self._secrets.seal(setup.secret.encode(), context=_secret_context(user_id))
        try:
            # The step that proved the setup counts as used: the same code cannot log in next.
            conn.execute(_ADD_AUTHENTICATOR, {"user_id": user_id, "secret_sealed": sealed, "created_at": now,
                                              "last_used_at": None, "last_step": step})
        except IntegrityError:
            conn.rollback()
            raise FactorError("An authenticator app is already on for this account.") from None
        codes = self._replace_codes(conn, user_id=user_id, now=now)
        _refresh_flag(conn, user_id)
        return codes

    # Removing

    def remove_totp(self, conn: Connection, *, user_id: int, required_scopes: frozenset[str]) -> bool:
        """Turn the app off; False if it was not on. Refused for an account whose scopes require a
        second factor, if it is the last (see `after_removal`)."""
        if count_passkeys(conn, user_id=user_id) == 0:
            refuse_removing_the_last(conn, user_id=user_id, required_scopes=required_scopes)
        removed = conn.execute(_REMOVE_AUTHENTICATOR, {"user_id": user_id}).rowcount == 1
        after_removal(conn, user_id=user_id)
        return removed

    # Recovery codes

    def replace_recovery_codes(self, conn: Connection, *, user_id: int, now: datetime) -> list[str]:
        """Ten new codes in place of the old ones; refused without a second factor to recover."""
        if not _has_factor(conn, user_id):
            raise FactorError("Recovery codes stand in for a second factor: turn one on first.")
        return self._replace_codes(conn, user_id=user_id, now=now)

    def first_factor_codes(self, conn: Connection, *, user_id: int, now: datetime) -> list[str] | None:
        """After a factor was added: ten recovery codes if the account has none yet (its first
        factor), to be shown once; None if it has some. Sets the account's flag either way."""
        codes = None
        if self.codes_left(conn, user_id=user_id) == 0:
            codes = self._replace_codes(conn, user_id=user_id, now=now)
        _refresh_flag(conn, user_id)
        return codes

    def _replace_codes(self, conn: Connection, *, user_id: int, now: datetime) -> list[str]:
        conn.execute(_REMOVE_CODES, {"user_id": user_id})
        codes = recovery_codes.new_codes()
        conn.execute(_ADD_CODE, [
            {"user_id": user_id, "code_hash": self._codes.digest(recovery_codes.normalise(code)), "created_at": now}
            for code in codes
        ])
        return codes

    def codes_left(self, conn: Connection, *, user_id: int) -> int:
        return conn.execute(_CODES_LEFT, {"user_id": user_id}).scalar_one()

    # Checking a code (the second step of a login, a confirmation)

    def check_code(self, conn: Connection, *, user_id: int, code: str, now: datetime | None = None) -> str | None:
        """TOTP or RECOVERY_CODE if `code` is a current authenticator code not used before, or an
        unused recovery code (which is spent); None otherwise. The caller commits (or rolls back,
        which leaves both unspent)."""
        now = now or utcnow()
        if totp.looks_like_code(code):
            return TOTP if self._use_totp(conn, user_id=user_id, code=code, now=now) else None
        plain = recovery_codes.normalise(code)
        if plain is None:
            return None
        spent = conn.execute(_USE_CODE, {"user_id": user_id, "code_hash": self._codes.digest(plain)}).rowcount == 1
        return RECOVERY_CODE if spent else None

    def _use_totp(self, conn: Connection, *, user_id: int, code: str, now: datetime) -> bool:
        row = conn.execute(_AUTHENTICATOR, {"user_id": user_id}).first()
        if row is None:
            return False
        secret = self._secrets.open(row.secret_sealed, context=_secret_context(user_id))
        if secret is None:
            # Only a changed AUTHSITE_SECRET_KEY does this: the owner needs `run.py mfa-reset`.
            log.warning("the authenticator secret of user %s does not open with this secret key", user_id)
            return False
        step = totp.matching_step(secret.decode(), code, at=self.clock())
        if step is None:
            return False
        return conn.execute(_USE_STEP, {"owner": user_id, "step": step, "now": now}).rowcount == 1


def remove_all_factors(conn: Connection, *, user_id: int) -> bool:
    """The operator's recovery (`mfa-reset`, a super's button): every factor and recovery code,
    every login waiting for a code, and every session go. True if there was a factor."""
    had = conn.execute(_REMOVE_AUTHENTICATOR, {"user_id": user_id}).rowcount > 0
    had = remove_all_passkeys(conn, user_id=user_id) or had
    had = conn.execute(_REMOVE_CODES, {"user_id": user_id}).rowcount > 0 or had
    pending.end_for_user(conn, user_id=user_id)
    conn.execute(sessions.END_USER_SESSIONS, {"user_id": user_id})
    _refresh_flag(conn, user_id)
    return had


def remove_factors_since(conn: Connection, *, user_id: int, since: datetime) -> bool:
    """Second factors and recovery codes added at `since` or later (while someone else held the
    account, say). True if any went. The caller commits."""
    went = conn.execute(delete(_totp).where(_totp.c.user_id == user_id, _totp.c.created_at >= since)).rowcount > 0
    went = conn.execute(delete(_passkey).where(_passkey.c.user_id == user_id,
                                               _passkey.c.created_at >= since)).rowcount > 0 or went
    went = conn.execute(delete(_code).where(_code.c.user_id == user_id, _code.c.created_at >= since)).rowcount > 0 or went
    after_removal(conn, user_id=user_id)
    return went


def available_methods(conn: Connection, *, user_id: int) -> list[str]:
    """How this account can answer a second step, in the order a page offers them."""
    methods = []
    if count_passkeys(conn, user_id=user_id):
        methods.append(PASSKEY)
    if conn.execute(_AUTHENTICATOR, {"user_id": user_id}).first() is not None:
        methods.append(TOTP)
    if methods and conn.execute(_CODES_LEFT, {"user_id": user_id}).scalar_one():
        methods.append(RECOVERY_CODE)
    return methods


def remove_one_passkey(conn: Connection, *, user_id: int, passkey_id: int, required_scopes: frozenset[str]) -> bool:
    """One of the user's passkeys; False if it is not theirs. Refused (FactorError) if it is the
    last second factor of an account whose scopes need one."""
    if conn.execute(_AUTHENTICATOR, {"user_id": user_id}).first() is None and count_passkeys(conn, user_id=user_id) == 1:
        refuse_removing_the_last(conn, user_id=user_id, required_scopes=required_scopes)
    removed = remove_passkey(conn, user_id=user_id, passkey_id=passkey_id)
    after_removal(conn, user_id=user_id)
    return removed


def refuse_removing_the_last(conn: Connection, *, user_id: int, required_scopes: frozenset[str]) -> None:
    """Raise FactorError if the account's scopes need a second factor (the one about to go is its last)."""
    if not required_scopes:
        return
    scopes = conn.execute(_SCOPES, {"user_id": user_id}).scalar() or []
    if required := sorted(required_scopes.intersection(scopes)):
        raise FactorError(
            f"Your permissions ({', '.join(required)}) need a second factor, so the last one cannot be "
            "removed. Add another first, or ask a super user if you have lost it."
        )


def after_removal(conn: Connection, *, user_id: int) -> None:
    """Once a factor went: without any left, the recovery codes go too (they would guard nothing)."""
    if not _has_factor(conn, user_id):
        conn.execute(_REMOVE_CODES, {"user_id": user_id})
    _refresh_flag(conn, user_id)


def factors_of(conn: Connection, *, user_ids: list[int]) -> dict[int, str]:
    """What the admin list shows of each account's second factors, in two queries for a page."""
    if not user_ids:
        return {}
    with_app = set(conn.execute(select(_totp.c.user_id).where(_totp.c.user_id.in_(user_ids))).scalars())
    keys = dict(conn.execute(
        select(_passkey.c.user_id, func.count()).where(_passkey.c.user_id.in_(user_ids)).group_by(_passkey.c.user_id)
    ).all())
    return {user_id: describe_factors(user_id in with_app, keys.get(user_id, 0)) for user_id in user_ids}


def describe_factors(has_app: bool, passkeys: int) -> str:
    parts = (["Authenticator app"] if has_app else []) + ([f"{passkeys} passkey{'s' if passkeys != 1 else ''}"] if passkeys else [])
    return ", ".join(parts) or "none"


def has_totp(conn: Connection, *, user_id: int) -> bool:
    return conn.execute(_AUTHENTICATOR, {"user_id": user_id}).first() is not None


def _has_factor(conn: Connection, user_id: int) -> bool:
    return (conn.execute(_AUTHENTICATOR, {"user_id": user_id}).first() is not None
            or count_passkeys(conn, user_id=user_id) > 0)


def _refresh_flag(conn: Connection, user_id: int) -> None:
    conn.execute(_REFRESH_FLAG, {"user_id": user_id})


def _secret_context(user_id: int) -> str:
    return f"totp secret|user {user_id}"


def _setup_context(user_id: int, bound_to: str) -> str:
    return f"totp setup|user {user_id}|{bound_to}"
