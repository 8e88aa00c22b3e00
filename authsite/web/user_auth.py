"""Logging a browser in and out: the session row and its cookie, together."""

from fastapi import Request
from starlette.responses import Response

from authsite import cookies, sessions
from authsite.middleware import SESSION_SCOPE_KEY
from authsite.models import User
from authsite.web.inputs import client_ip


async def log_in_user(site, request: Request, response: Response, user: User, *, remember: bool) -> None:
    # Always a brand-new token: a token known before login (planted by an
    # attacker, say) must never become an authenticated session.
    async with site.database.sessionmaker() as db:
        await _end_current_session(db, request)
        token = await sessions.start_session(
            db=db,
            user_id=user.id,
            lifetimes=site.lifetimes,
            remember=remember,
            ip=client_ip(request),
            user_agent=request.headers.get("user-agent"),
        )
    secure = cookies.is_secure(request.scope, site.settings.cookie_secure)
    max_age = site.settings.remember_seconds if remember else None
    cookies.set_session_cookie(response, token, secure=secure, max_age=max_age)
    # The pre-login CSRF token dies here; forms now use the session-bound one.
    cookies.clear_csrf_cookie(response, secure=secure)


async def log_out_user(site, request: Request, response: Response) -> None:
    async with site.database.sessionmaker() as db:
        await _end_current_session(db, request)
    secure = cookies.is_secure(request.scope, site.settings.cookie_secure)
    cookies.clear_session_cookie(response, secure=secure)


async def _end_current_session(db, request: Request) -> None:
    current = request.scope.get(SESSION_SCOPE_KEY)
    if current is not None:
        await sessions.end_session(db=db, session_id=current.id)
