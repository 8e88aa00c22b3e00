"""Logging a browser in and out: the login (authsite/logins.py) and the session cookie."""

from datetime import datetime
from typing import Any
from functools import partial

from fastapi import Request
from starlette.responses import Response

from authsite import cookies, sessions
from authsite.events import Kind
from authsite.factors.passkeys import PasskeyAnswer
from authsite.factors.second_factors import RECOVERY_CODE
from authsite.logins import PENDING_LOGIN_LIFETIME, LoginRequest, LoginResult
from authsite.middleware import SESSION_SCOPE_KEY
from authsite.models import User
from authsite.notices import Notice, codes_left_sentence
from authsite.second_step import CodeAttempt, SecondStepResult
from authsite.web.audit import notify
from authsite.web.inputs import client_ip


async def attempt_login(site, request: Request, username: str, password: str, *, via: str,
                        remember: bool) -> LoginResult:
    """Check the login and, if it is right, start its session (set the cookie with `set_session`),
    or for an account with a second factor, its pending login (`hold_for_second_step`)."""
    current = request.scope.get(SESSION_SCOPE_KEY)
    result = await site.logins.log_in(LoginRequest(
        username=username, password=password, remember=remember, ip=client_ip(request),
        user_agent=request.headers.get("user-agent"), via=via, known_device=known_device(site, request),
        # Always a brand-new token, and the browser's old session ends: a token known before
        # login (planted by an attacker, say) must never become an authenticated session.
        replaces=current.token_hash if current is not None else None,
    ))
    if result.user is not None and result.new_device:
        notify(site, request, Notice.NEW_DEVICE, user=result.user)
    return result


def hold_for_second_step(site, request: Request, response: Response, pending_token: str) -> None:
    """The browser keeps only the pending login's token, for five minutes; no session yet."""
    secure = cookies.is_secure(request.scope, site.settings.cookie_secure)
    max_age = int(PENDING_LOGIN_LIFETIME.total_seconds())
    cookies.set_pending_login_cookie(response, pending_token, secure=secure, max_age=max_age)


def has_pending_login(site, request: Request) -> bool:
    return bool(request.cookies.get(_pending_cookie(site, request)))


async def attempt_second_step(site, request: Request, code: str, *, via: str,
                              passkey: PasskeyAnswer | None = None) -> SecondStepResult:
    """The code typed (or the passkey used) for the pending login this browser holds; mails the
    notices a success calls for."""
    result = await site.second_step.finish_login(CodeAttempt(
        code=code, ip=client_ip(request), user_agent=request.headers.get("user-agent"), via=via,
        token=request.cookies.get(_pending_cookie(site, request)), known_device=known_device(site, request),
        passkey=passkey,
    ))
    if result.clone_of is not None:
        await warn_of_clone(site, request, user=result.clone_of)
    if result.user is not None:
        if result.method == RECOVERY_CODE:
            notify(site, request, Notice.RECOVERY_CODE_USED, user=result.user,
                   codes_left=codes_left_sentence(result.codes_left or 0))
        if result.new_device:
            notify(site, request, Notice.NEW_DEVICE, user=result.user)
    return result


async def warn_of_clone(site, request: Request, *, user) -> None:
    """A passkey whose counter went back was refused: recorded, and its owner told."""
    await site.audit.record(Kind.PASSKEY_CLONE_SUSPECTED, user_id=user.id, ip=client_ip(request),
                            user_agent=request.headers.get("user-agent"))
    notify(site, request, Notice.PASSKEY_CLONED, user=user)


def answer_from(site, request: Request, credential: Any) -> PasskeyAnswer:
    """A passkey's answer, with the challenge this browser was given (from its cookie)."""
    name = cookies.passkey_challenge_cookie_name(cookies.is_secure(request.scope, site.settings.cookie_secure))
    return PasskeyAnswer(credential=credential, sealed_challenge=request.cookies.get(name))


def forget_challenge(site, request: Request, response: Response) -> None:
    cookies.clear_passkey_challenge_cookie(response, secure=cookies.is_secure(request.scope, site.settings.cookie_secure))


def end_second_step(site, request: Request, response: Response) -> None:
    cookies.clear_pending_login_cookie(response, secure=cookies.is_secure(request.scope, site.settings.cookie_secure))


def known_device(site, request: Request) -> tuple[tuple[int, str], ...]:
    return tuple(site.devices.accounts(request.cookies.get(_device_cookie(site, request))).items())


def _pending_cookie(site, request: Request) -> str:
    return cookies.pending_login_cookie_name(cookies.is_secure(request.scope, site.settings.cookie_secure))


async def log_in_user(site, request: Request, response: Response, user: User, *, remember: bool,
                      authenticated_at: datetime | None = None) -> bool:
    """Start a session for a user who just proved who they are some other way (signed up,
    changed their password) and set its cookie. False if the password or the account
    changed since: answer as a failed login. `authenticated_at`: when the browser last proved who
    it is, if not now (a password change needs no second factor, so it must not stand in for the
    confirmation sudo mode asks of an account that has one)."""
    current = request.scope.get(SESSION_SCOPE_KEY)
    token = await site.database.run(partial(
        sessions.start_session, user_id=user.id, password_hash=user.password_hash, lifetimes=site.lifetimes,
        remember=remember, ip=client_ip(request), user_agent=request.headers.get("user-agent"),
        replaces=current.token_hash if current is not None else None, authenticated_at=authenticated_at,
    ))
    if token is None:
        return False
    set_session(site, request, response, token, user_id=user.id, remember=remember)
    return True


def set_session(site, request: Request, response: Response, token: str, *, user_id: int, remember: bool) -> None:
    """The new session's cookie, and this browser noted as one that has signed in to the account."""
    secure = cookies.is_secure(request.scope, site.settings.cookie_secure)
    max_age = site.settings.remember_seconds if remember else None
    cookies.set_session_cookie(response, token, secure=secure, max_age=max_age)
    # The pre-login CSRF token dies here; forms now use the session-bound one.
    cookies.clear_csrf_cookie(response, secure=secure)
    device = site.devices.with_account(request.cookies.get(cookies.device_cookie_name(secure)), user_id)
    cookies.set_device_cookie(response, device, secure=secure)


def renew_session_cookie(site, request: Request, response: Response, token: str) -> None:
    """The same session under a new token (after the user confirmed who they are)."""
    current = request.scope[SESSION_SCOPE_KEY]
    secure = cookies.is_secure(request.scope, site.settings.cookie_secure)
    max_age = site.settings.remember_seconds if current.remember else None
    cookies.set_session_cookie(response, token, secure=secure, max_age=max_age)


def _device_cookie(site, request: Request) -> str:
    return cookies.device_cookie_name(cookies.is_secure(request.scope, site.settings.cookie_secure))


async def log_out_user(site, request: Request, response: Response) -> bool:
    """End the request's session and clear its cookie; True if this request ended it (one
    logout, one audit event, however many race). The caller has checked the request's origin."""
    current = request.scope.get(SESSION_SCOPE_KEY)
    if current is None:
        # Nothing proves this request came from the browser whose cookie it would clear.
        return False
    ended = await site.database.run(partial(sessions.end_session, session_id=current.id))
    cookies.clear_session_cookie(response, secure=cookies.is_secure(request.scope, site.settings.cookie_secure))
    return ended


def too_many_attempts(retry_after: int) -> str:
    minutes = max(1, round(retry_after / 60))
    return f"Too many attempts. Try again in {minutes} minute{'s' if minutes != 1 else ''}."
