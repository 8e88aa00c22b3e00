"""Pure ASGI: session cookie -> request.user / request.auth, with one indexed lookup."""

from collections.abc import Awaitable, Callable

from sqlalchemy.exc import SQLAlchemyError
from starlette.responses import PlainTextResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from authsite import cookies
from authsite.db import DATABASE_DOWN_MESSAGE
from authsite.identity import ANONYMOUS, NO_SCOPES, AuthenticatedUser, Scopes
from authsite.session_reader import ReaderUnavailable
from authsite.sessions import ActiveSession

SESSION_SCOPE_KEY = "authsite.session"

Lookup = Callable[[str], Awaitable[ActiveSession | None]]


class AuthMiddleware:
    def __init__(self, app: ASGIApp, *, lookup: Lookup, cookie_secure: str, skip_prefixes: tuple[str, ...] = ()):
        self.app = app
        self.lookup = lookup
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
            except (ReaderUnavailable, SQLAlchemyError):
                await _unavailable(scope, receive, send)
                return
        scope[SESSION_SCOPE_KEY] = session
        if session is None:
            scope["user"], scope["auth"] = ANONYMOUS, NO_SCOPES
        else:
            scope["user"], scope["auth"] = AuthenticatedUser(session), Scopes(session.scopes)
        await self.app(scope, receive, send)

    async def _find_session(self, scope: Scope) -> ActiveSession | None:
        secure = cookies.is_secure(scope, self.cookie_secure)
        token = cookies.read_cookie(scope, cookies.session_cookie_name(secure))
        if not token:
            return None
        return await self.lookup(token)


async def _unavailable(scope: Scope, receive: Receive, send: Send) -> None:
    if scope["type"] != "http":
        await send({"type": "websocket.close", "code": 1011})
        return
    response = PlainTextResponse(DATABASE_DOWN_MESSAGE, status_code=503)
    await response(scope, receive, send)
