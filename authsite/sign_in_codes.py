"""Signing in by a code mailed to the account's address (AUTHSITE_LOGIN_BY_CODE). No HTTP here.

The browser that asks gets a random token in a cookie before anyone knows whether the address
belongs to an account, so the answer is the same either way; in the background, for an account
that has the address, two pending steps (authsite/pending.py) are made, each for 10 minutes:

- the code's, reached by the browser's token: it keeps the code as an HMAC under a key derived from
  the secret key (a copy of the database gives no codes), and ends at the fifth wrong code;
- the one-click link's, reached by the link's token: opened in the browser that asked, it signs in;
  opened anywhere else it asks first (a mail scanner following links signs nobody in).

Using either spends both. A code that reaches its account proves the address, which is marked
confirmed. An account with a second factor goes on to it, as after a password.
"""

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import Connection, bindparam, select

from authsite import email_ownership, pending, rules, sessions, tokens
from authsite.factors.second_factors import remove_all_factors
from authsite.logins import STAMP_LOGIN, begin_second_step
from authsite.models import User

CODE_LIFETIME = timedelta(minutes=10)
MAX_WRONG_CODES = 5
CODE_DIGITS = 6
CODE = email_ownership.SIGN_IN_CODE
LINK = email_ownership.SIGN_IN_LINK

_user = User.__table__
_BY_EMAIL = select(_user).where(_user.c.email_key == bindparam("key"))
_BY_ID = select(_user).where(_user.c.id == bindparam("user_id"))


@dataclass(frozen=True)
class Mailable:
    """What the mail to an account says: its code and the link's token."""

    user: User
    code: str
    link: str

    def __repr__(self) -> str:
        return f"Mailable(user_id={self.user.id})"


@dataclass(frozen=True)
class SignedIn:
    """A right code or link: a session's token, or (second factor) a pending login's."""

    user: User | None = None
    token: str | None = None
    pending: str | None = None  # the account has a second factor: on to /auth/mfa
    remember: bool = False
    next_path: str = "/"
    gone: bool = False  # no live code for this browser (never asked, expired, used, 5 wrong)
    ended: bool = False  # that wrong code was the fifth
    other_browser: bool = False  # a link opened where it was not asked for: ask before signing in
    to: str = ""  # whose (masked address), for that question: nobody signs into another's account unawares
    took_over: bool = False  # the code proved the address for the first time: what was set before went


class SignInCodes:
    def __init__(self, *, secret_key: str, lifetimes: sessions.Lifetimes):
        # A key of its own, derived from the secret key (HMAC as the PRF): never the key itself.
        self._key = hmac.new(secret_key.encode(), b"authsite sign-in codes", hashlib.sha256).digest()
        self.lifetimes = lifetimes

    def _digest(self, code: str, browser_token: str) -> str:
        return hmac.new(self._key, f"{browser_token}|{code}".encode(), hashlib.sha256).hexdigest()

    def request(self, conn: Connection, *, email: str, browser_token: str, remember: bool, next_path: str,
                now: datetime) -> Mailable | None:
        """For an active account with this address: a new code and link (earlier ones end). Commits."""
        try:
            key = rules.email_key(rules.normalise_email(email))
        except ValueError:
            return None
        row = conn.execute(_BY_EMAIL, {"key": key}).first()
        if row is None or not row.is_active:
            return None
        user = User(**row._mapping)
        _end_all(conn, user.id)
        code = "".join(secrets.choice("0123456789") for _ in range(CODE_DIGITS))
        link = tokens.new_token()
        pending.begin(conn, purpose=CODE, user_id=user.id, lifetime=CODE_LIFETIME, now=now, token=browser_token,
                      data={"code": self._digest(code, browser_token), "remember": remember, "next": next_path})
        pending.begin(conn, purpose=LINK, user_id=user.id, lifetime=CODE_LIFETIME, now=now, token=link,
                      data={"browser": tokens.hash_token(browser_token), "remember": remember, "next": next_path,
                            "to": email_ownership.mask(user.email or "")})
        conn.commit()
        return Mailable(user, code, link)

    def has_pending(self, conn: Connection, *, browser_token: str | None, now: datetime) -> bool:
        return pending.find(conn, purpose=CODE, token=browser_token, now=now) is not None

    def confirm_code(self, conn: Connection, *, browser_token: str | None, code: str, ip: str | None,
                     user_agent: str | None, replaces: str | None, now: datetime) -> SignedIn:
        step = pending.find(conn, purpose=CODE, token=browser_token, now=now)
        if step is None:
            return SignedIn(gone=True)
        typed = "".join(code.split())
        if not hmac.compare_digest(self._digest(typed, browser_token), step.data.get("code", "")):
            ended = pending.count_failure(conn, step_id=step.id, max_failures=MAX_WRONG_CODES)
            if ended:
                _end_all(conn, step.user_id)
            conn.commit()
            return SignedIn(ended=ended)
        return self._sign_in(conn, step, ip=ip, user_agent=user_agent, replaces=replaces, now=now)

    def open_link(self, conn: Connection, *, link_token: str, browser_token: str | None, confirmed: bool,
                  ip: str | None, user_agent: str | None, replaces: str | None, now: datetime) -> SignedIn:
        """The link: signs in the browser that asked at once, any other only once it `confirmed`."""
        step = pending.find(conn, purpose=LINK, token=link_token, now=now)
        if step is None:
            return SignedIn(gone=True)
        same_browser = bool(browser_token) and hmac.compare_digest(
            tokens.hash_token(browser_token) if tokens.is_well_formed(browser_token) else "", step.data.get("browser", ""))
        if not same_browser and not confirmed:
            return SignedIn(other_browser=True, next_path=step.data.get("next", "/"), to=step.data.get("to", ""))
        return self._sign_in(conn, step, ip=ip, user_agent=user_agent, replaces=replaces, now=now)

    def _sign_in(self, conn: Connection, step: pending.Step, *, ip, user_agent, replaces, now) -> SignedIn:
        if not pending.claim(conn, step_id=step.id, now=now):
            return SignedIn(gone=True)
        _end_all(conn, step.user_id)
        row = conn.execute(_BY_ID, {"user_id": step.user_id}).first()
        if row is None or not row.is_active:
            conn.commit()
            return SignedIn(gone=True)
        # The code came through the account's mailbox: the address is proved. If it was not
        # before, whoever signed up with it may not have been its owner (pre-hijacking): as after
        # a reset link (authsite/web/reset.py), their second factors, pending steps (an email
        # change among them) and sessions go, and so does their password, which nothing here
        # replaces (the owner sets one with a reset link).
        took_over = email_ownership.proved_by_mail(conn, user_id=step.user_id, now=now)
        if took_over:
            remove_all_factors(conn, user_id=step.user_id)
            email_ownership.disable_password(conn, user_id=step.user_id)
            row = conn.execute(_BY_ID, {"user_id": step.user_id}).first()
        user = User(**row._mapping)
        remember, next_path = bool(step.data.get("remember")), step.data.get("next") or "/"
        if user.mfa_enabled:
            token = begin_second_step(conn, user=user, remember=remember, via="code", replaces=replaces, now=now)
            conn.commit()
            return SignedIn(user=user, pending=token, remember=remember, next_path=next_path)
        checked = {"user_id": user.id, "checked_hash": user.password_hash}
        conn.execute(STAMP_LOGIN, {**checked, "now": now})
        token = sessions.start_session(conn, user_id=user.id, password_hash=user.password_hash,
                                       lifetimes=self.lifetimes, remember=remember, ip=ip, user_agent=user_agent,
                                       replaces=replaces)
        conn.commit()
        if token is None:
            return SignedIn(gone=True)
        user.last_login_at = now
        return SignedIn(user=user, token=token, remember=remember, next_path=next_path, took_over=took_over)


def _end_all(conn: Connection, user_id: int) -> None:
    pending.end_for_user(conn, user_id=user_id, purpose=CODE)
    pending.end_for_user(conn, user_id=user_id, purpose=LINK)
