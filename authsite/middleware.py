"""Pure ASGI: session cookie -> request.user / request.auth, with one indexed lookup."""

import logging
from collections.abc import Awaitable, Callable

from sqlalchemy.exc import SQLAlchemyError
from starlette.types import ASGIApp, Receive, Scope, Send

from authsite import cookies
from authsite.identity import ANONYMOUS, NO_SCOPES, AuthenticatedUser, Scopes
from authsite.session_reader import ReaderUnavailable
from authsite.sessions import ActiveSession

log = logging.getLogger("authsite")

SESSION_SCOPE_KEY = "authsite.session"

Lookup = Callable[[str], Awaitable[ActiveSession | None]]


# What the lookup raises when the database is out of reach or silent: the reader's own error, the
# engine's (a touch of the idle expiry writes), and the timeouts of either.
LOOKUP_FAILED = (ReaderUnavailable, SQLAlchemyError, OSError)


class AuthMiddleware:
    def __init__(
        self, app: ASGIApp, *, lookup: Lookup, unavailable: ASGIApp, cookie_secure: str,
        skip_prefixes: tuple[str, ...] = (), mfa_required: frozenset[str] = frozenset(),
    ):
        self.app = app
        self.mfa_required = mfa_required  # AUTHSITE_MFA_REQUIRED_SCOPES
        self.lookup = lookup
        self.unavailable = unavailable  # the database-down answer, the same one anonymous visitors get
        self.cookie_secure = cookie_secure
        self.skip_prefixes = skip_prefixes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        session = None
        if not scope["path"].startswith(self.skip_prefixes):
            try:
                session = await self._find_session(scope)
            except LOOKUP_FAILED as exc:
                log.warning("database unavailable: %s on %s (session lookup)", type(exc).__name__, scope["path"])
                # Who is asking is unknown: the answer is the one anyone gets.
                scope["user"], scope["auth"] = ANONYMOUS, NO_SCOPES
                await self.unavailable(scope, receive, send)
                return
        scope[SESSION_SCOPE_KEY] = session
        if session is None:
            scope["user"], scope["auth"] = ANONYMOUS, NO_SCOPES
        else:
            needs_factor = bool(self.mfa_required) and not session.mfa_enabled and not self.mfa_required.isdisjoint(
                session.scopes
            )
            scope["user"] = AuthenticatedUser(session, needs_second_factor=needs_factor)
            scope["auth"] = Scopes(session.scopes)
        await self.app(scope, receive, send)

    async def _find_session(self, scope: Scope) -> ActiveSession | None:
        secure = cookies.is_secure(scope, self.cookie_secure)
        token = cookies.read_cookie(scope, cookies.session_cookie_name(secure))
        if not token:
            return None
        return await self.lookup(token)

