"""Logging a browser in and out: the login (authsite/logins.py) and the session cookie."""

from functools import partial

from fastapi import Request
from starlette.responses import Response

from authsite import cookies, sessions
from authsite.logins import LoginRequest, LoginResult
from authsite.middleware import SESSION_SCOPE_KEY
from authsite.models import User
from authsite.web.inputs import client_ip


async def attempt_login(site, request: Request, username: str, password: str, *, via: str,
                        remember: bool) -> LoginResult:
    """Check the login and, if it is right, start its session (set the cookie with `set_session`)."""
    current = request.scope.get(SESSION_SCOPE_KEY)
    known = site.devices.accounts(request.cookies.get(_device_cookie(site, request)))
    return await site.logins.log_in(LoginRequest(
        username=username, password=password, remember=remember, ip=client_ip(request),
        user_agent=request.headers.get("user-agent"), via=via, known_device=tuple(known.items()),
        # Always a brand-new token, and the browser's old session ends: a token known before
        # login (planted by an attacker, say) must never become an authenticated session.
        replaces=current.id if current is not None else None,
    ))


async def log_in_user(site, request: Request, response: Response, user: User, *, remember: bool) -> bool:
    """Start a session for a user who just proved who they are some other way (signed up,
    changed their password) and set its cookie. False if the password or the account
    changed since: answer as a failed login."""
    current = request.scope.get(SESSION_SCOPE_KEY)
    token = await site.database.run(partial(
        sessions.start_session, user_id=user.id, password_hash=user.password_hash, lifetimes=site.lifetimes,
        remember=remember, ip=client_ip(request), user_agent=request.headers.get("user-agent"),
        replaces=current.id if current is not None else None,
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
