"""Sudo mode: a logged-in user proving who they are again before a sensitive change. No HTTP here.

A stolen session (a borrowed laptop, a cookie lifted by malware) should not be enough to turn off
the second factor, change the email or lock the owner out. So those changes need a session that
logged in, or confirmed its password (and its code, if the account has a second factor), within
AUTHSITE_SUDO_SECONDS. When it was is `session.authenticated_at`, a column of the session row, so
the window holds across workers and hosts. Wrong answers count like failed logins, and a right one
gives the session a new token, as any authentication does (ASVS 7.2.4).
"""

from dataclasses import dataclass
from functools import partial

from authsite import sessions
from authsite.db import Database
from authsite.factors.passkeys import PasskeyAnswer
from authsite.logins import Logins, PasswordCheck
from authsite.models import User, utcnow
from authsite.second_step import CodeAttempt, SecondStep

WRONG_PASSWORD = "That is not your password."
WRONG_CODE = "That code is not right. Enter the current code from your authenticator app, or a recovery code."
PASSKEY_REFUSED = "That passkey was not accepted. Use a passkey of this account, or type your password."
CODE_NEEDED = "Enter the code from your authenticator app."
SESSION_ENDED = "This session has just ended. Log in again."


@dataclass(frozen=True)
class IdentityCheck:
    """What a logged-in user typed to confirm who they are."""

    user: User
    session_id: int
    password: str
    code: str = ""
    ip: str | None = None
    user_agent: str | None = None
    via: str = "confirm"
    passkey: PasskeyAnswer | None = None  # a passkey, which stands for the password and the code

    def __repr__(self) -> str:  # never the password or the code
        return f"IdentityCheck(user_id={self.user.id}, via={self.via!r})"


@dataclass(frozen=True)
class Reauthenticated:
    confirmed: bool = False
    retry_after: int | None = None
    errors: dict[str, str] | None = None  # field -> message, when not confirmed
    method: str | None = None  # the second factor that answered, if any
    codes_left: int | None = None  # after a recovery code was spent
    token: str | None = None  # the session's new token, for its cookie
    clone_suspected: bool = False  # the passkey's counter went back: its owner is told


async def confirm_identity(*, database: Database, logins: Logins, second_step: SecondStep,
                           check: IdentityCheck) -> Reauthenticated:
    """Check the password, then (for an account with a second factor) the code; if both are
    right, the session's sudo window starts again. A passkey of the account (user verification
    required) answers for both, as it does at login."""
    if check.passkey is not None:
        answer = await second_step.check_code(user=check.user, attempt=CodeAttempt(
            code="", ip=check.ip, user_agent=check.user_agent, via=check.via, passkey=check.passkey,
        ))
        if answer.retry_after is not None:
            return Reauthenticated(retry_after=answer.retry_after)
        if not answer.confirmed:
            return Reauthenticated(errors={"form": PASSKEY_REFUSED}, clone_suspected=answer.clone_suspected)
        return await _restart_window(database, check, method=answer.method)
    if check.user.mfa_enabled and not check.code.strip():
        return Reauthenticated(errors={"code": CODE_NEEDED})
    password = await logins.confirm_password(PasswordCheck(
        user=check.user, password=check.password, ip=check.ip, user_agent=check.user_agent, via=check.via,
    ))
    if password.retry_after is not None:
        return Reauthenticated(retry_after=password.retry_after)
    if not password.confirmed:
        return Reauthenticated(errors={"password": WRONG_PASSWORD})
    method = left = None
    if check.user.mfa_enabled:
        code = await second_step.check_code(user=check.user, attempt=CodeAttempt(
            code=check.code, ip=check.ip, user_agent=check.user_agent, via=check.via,
        ))
        if code.retry_after is not None:
            return Reauthenticated(retry_after=code.retry_after)
        if not code.confirmed:
            return Reauthenticated(errors={"code": WRONG_CODE})
        method, left = code.method, code.codes_left
    return await _restart_window(database, check, method=method, codes_left=left)


async def _restart_window(database: Database, check: IdentityCheck, *, method: str | None,
                          codes_left: int | None = None) -> Reauthenticated:
    token = await database.run(partial(sessions.reauthenticate, session_id=check.session_id, now=utcnow()))
    if token is None:  # the session ended meanwhile (logged out elsewhere)
        return Reauthenticated(errors={"form": SESSION_ENDED})
    return Reauthenticated(confirmed=True, method=method, codes_left=codes_left, token=token)
