"""authsite's one ASGI layer in front of the app: the host check, the body limit, the session cookie
turned into request.user / request.auth with one indexed lookup, HEAD as GET, the security headers.

One layer, not five. Every request of the host app passes here, and each pure ASGI layer costs a
coroutine call, and most a closure, per request: five of them were about 8 µs of the 60 µs
authsite added to a page (bench/RESULTS.md). Each decision still lives in its own module
(hosts.py, body_limit.py, head.py, headers.py); this one only puts them in order.
"""

import logging
from collections.abc import Awaitable, Callable

from sqlalchemy.exc import SQLAlchemyError
from starlette.routing import BaseRoute
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from authsite import cookies
from authsite.body_limit import BodyLimit
from authsite.head import answer_as_get, takes_head
from authsite.headers import SecurityHeaders
from authsite.hosts import AllowedHosts
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
        hosts: AllowedHosts, headers: SecurityHeaders, body_limit: BodyLimit, routes: list[BaseRoute],
        skip_prefixes: tuple[str, ...] = (), mfa_required: frozenset[str] = frozenset(),
    ):
        self.app = app
        self.hosts = hosts
        self.headers = headers
        self.body_limit = body_limit
        self.routes = routes  # the app's own list, read at request time: the host adds its routes after install
        self.mfa_required = mfa_required  # AUTHSITE_MFA_REQUIRED_SCOPES
        self.lookup = lookup
        self.unavailable = unavailable  # the database-down answer, the same one anonymous visitors get
        self.cookie_secure = cookie_secure
        self.skip_prefixes = skip_prefixes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind != "http":
            if kind != "websocket":
                await self.app(scope, receive, send)
            elif not self.hosts.allow(scope):
                await self.hosts.refuse(scope, send)
            elif await self._identify(scope):
                await self.app(scope, receive, send)
            else:
                await self.unavailable(scope, receive, send)
            return
        # First the host name, so a refused request touches nothing else: no lookup, no database.
        if not self.hosts.allow(scope):
            await self.hosts.refuse(scope, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = self.headers.merged(scope, message.get("headers") or ())
            await send(message)

        path = scope["path"]
        if path.startswith(self.body_limit.prefixes):
            if too_large := self.body_limit.declared_too_large(scope):
                await too_large(scope, receive, send_with_headers)
                return
            receive = self.body_limit.counting(receive)
        if not await self._identify(scope):
            await self.unavailable(scope, receive, send_with_headers)
            return
        if scope["method"] == "HEAD" and not takes_head(self.routes, scope):
            await answer_as_get(self.app, scope, receive, send_with_headers)
            return
        await self.app(scope, receive, send_with_headers)

    async def _identify(self, scope: Scope) -> bool:
        """request.user and request.auth from the session cookie; False if the database did not answer."""
        session = None
        if not scope["path"].startswith(self.skip_prefixes) and (token := self._token(scope)):
            try:
                session = await self.lookup(token)
            except LOOKUP_FAILED as exc:
                log.warning("database unavailable: %s on %s (session lookup)", type(exc).__name__, scope["path"])
                # Who is asking is unknown: the answer is the one anyone gets.
                scope["user"], scope["auth"] = ANONYMOUS, NO_SCOPES
                return False
        scope[SESSION_SCOPE_KEY] = session
        if session is None:
            scope["user"], scope["auth"] = ANONYMOUS, NO_SCOPES
        else:
            needs_factor = bool(self.mfa_required) and not session.mfa_enabled and not self.mfa_required.isdisjoint(
                session.scopes
            )
            scope["user"] = AuthenticatedUser(session, needs_second_factor=needs_factor)
            scope["auth"] = Scopes(session.scopes)
        return True

    def _token(self, scope: Scope) -> str | None:
        secure = cookies.is_secure(scope, self.cookie_secure)
        return cookies.read_cookie(scope, cookies.session_cookie_name(secure))
