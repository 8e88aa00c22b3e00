"""Logging a browser in and out: the rate limit, the password check, the session row and its cookie."""

from dataclasses import dataclass

from fastapi import Request
from starlette.responses import Response

from authsite import accounts, cookies, sessions
from authsite.events import Kind
from authsite.middleware import SESSION_SCOPE_KEY
from authsite.models import User
from authsite.web.audit import audit, audit_login
from authsite.web.inputs import client_ip


@dataclass(frozen=True)
class LoginOutcome:
    user: User | None
    retry_after: int | None = None  # set when throttled: answer 429


async def attempt_login(site, request: Request, username: str, password: str, *, via: str) -> LoginOutcome:
    """Check a login against the rate limits and the password; audit it either way.
    Too many failures answer 429 even for the right password, and the same way
    whether or not the account exists (the limit is keyed by the typed name)."""
    ip = client_ip(request)
    address_wait = await site.throttle.is_over(site.limits.login_address(ip))
    attempt = await site.throttle.attempt(site.limits.login(username, ip)) if address_wait is None else None
    if address_wait is not None or attempt.is_throttled:
        await audit(site, request, Kind.LOGIN_FAILED, username=username, reason="throttled", via=via)
        return LoginOutcome(None, address_wait or attempt.retry_after)
    async with site.database.sessionmaker() as db:
        check = await accounts.check_login(db=db, hasher=site.hasher, username=username, password=password)
    await audit_login(site, request, check, username, via=via)
    if check.user is not None:
        await site.throttle.forgive(attempt)
    else:
        await site.throttle.count(site.limits.login_address(ip))
    return LoginOutcome(check.user)


async def log_in_user(site, request: Request, response: Response, user: User, *, remember: bool) -> bool:
    """Start a session and set its cookie on `response`. False if the password
    or the account changed since `user` was checked: answer as a failed login."""
    # Always a brand-new token: a token known before login (planted by an
    # attacker, say) must never become an authenticated session.
    async with site.database.sessionmaker() as db:
        await _end_current_session(db, request)
        try:
            token = await sessions.start_session(
                db=db,
                user_id=user.id,
                password_hash=user.password_hash,
                lifetimes=site.lifetimes,
                remember=remember,
                ip=client_ip(request),
                user_agent=request.headers.get("user-agent"),
            )
        except sessions.PasswordChanged:
            return False
    secure = cookies.is_secure(request.scope, site.settings.cookie_secure)
    max_age = site.settings.remember_seconds if remember else None
    cookies.set_session_cookie(response, token, secure=secure, max_age=max_age)
    # The pre-login CSRF token dies here; forms now use the session-bound one.
    cookies.clear_csrf_cookie(response, secure=secure)
    return True


async def log_out_user(site, request: Request, response: Response) -> None:
    async with site.database.sessionmaker() as db:
        await _end_current_session(db, request)
    secure = cookies.is_secure(request.scope, site.settings.cookie_secure)
    cookies.clear_session_cookie(response, secure=secure)


async def _end_current_session(db, request: Request) -> None:
    current = request.scope.get(SESSION_SCOPE_KEY)
    if current is not None:
        await sessions.end_session(db=db, session_id=current.id)


def too_many_attempts(retry_after: int) -> str:
    minutes = max(1, round(retry_after / 60))
    return f"Too many attempts. Try again in {minutes} minute{'s' if minutes != 1 else ''}."
