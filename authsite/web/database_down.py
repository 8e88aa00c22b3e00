"""The one answer a visitor gets while the database is busy or out of reach (a SQLite file locked
past its busy timeout, a Postgres that refuses connections or stops answering): 503 with Retry-After
and a message, JSON under /api/ and the error page elsewhere, whether or not they are logged in.

AnswerDatabaseDown gives it around authsite's own routes (the host app's errors stay its own); the
session middleware gives the same when the lookup behind a cookie fails, on any path."""

import logging

import sqlalchemy.exc
from fastapi import Request
from starlette.responses import JSONResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from authsite.db import DATABASE_DOWN_MESSAGE
from authsite.errors import Render, is_api_request
from authsite.session_reader import ReaderUnavailable

log = logging.getLogger("authsite")

RETRY_AFTER_SECONDS = 5

# What a busy, unreachable or silent database raises: SQLAlchemy's wrappers (its TimeoutError is a
# pool with no free connection in time), asyncpg's own ConnectionRefusedError when Postgres is not
# listening, the builtin TimeoutError of asyncpg's connect and statement timeouts (db.py), and the
# session reader's ReaderUnavailable.
DATABASE_DOWN = (
    sqlalchemy.exc.OperationalError,
    sqlalchemy.exc.InterfaceError,
    sqlalchemy.exc.TimeoutError,
    ConnectionError,
    TimeoutError,
    ReaderUnavailable,
)


class DatabaseDownAnswer:
    """An ASGI app that answers the request it is given with the database-down 503."""

    def __init__(self, render: Render):
        self.render = render

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await send({"type": "websocket.close", "code": 1011})
            return
        await self.response(Request(scope, receive))(scope, receive, send)

    def response(self, request: Request) -> Response:
        headers = {"retry-after": str(RETRY_AFTER_SECONDS)}
        if is_api_request(request):
            return JSONResponse({"detail": DATABASE_DOWN_MESSAGE}, status_code=503, headers=headers)
        context = {"title": "Try again in a moment", "message": DATABASE_DOWN_MESSAGE}
        page = self.render(request, "error.html", context, status_code=503)
        page.headers.update(headers)
        return page


class AnswerDatabaseDown:
    def __init__(self, app: ASGIApp, *, answer: DatabaseDownAnswer):
        self.app = app
        self.answer = answer

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        started = False

        async def watched(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, receive, watched)
        except DATABASE_DOWN as exc:
            if started or scope["type"] != "http":
                raise
            log.warning("database unavailable: %s on %s", type(exc).__name__, scope["path"])
            await self.answer(scope, receive, send)
