"""authsite's own pages and API answer 503 with a message when the database is busy or out of
reach (a SQLite file locked past its busy timeout, a Postgres that refuses connections), instead
of a 500 and a traceback. Only around authsite's routes: the host app's errors stay its own."""

import logging

import sqlalchemy.exc
from fastapi import Request
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from authsite.db import DATABASE_DOWN_MESSAGE
from authsite.errors import Render, is_api_request

log = logging.getLogger("authsite")

RETRY_AFTER_SECONDS = 5

# What a busy or unreachable database raises: SQLAlchemy's wrappers, and asyncpg's own
# ConnectionRefusedError when Postgres is not listening at all.
DATABASE_DOWN = (
    sqlalchemy.exc.OperationalError,
    sqlalchemy.exc.InterfaceError,
    sqlalchemy.exc.TimeoutError,
    ConnectionError,
)


class AnswerDatabaseDown:
    def __init__(self, app: ASGIApp, *, render: Render):
        self.app = app
        self.render = render

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
            await self._answer(Request(scope, receive))(scope, receive, send)

    def _answer(self, request: Request):
        headers = {"retry-after": str(RETRY_AFTER_SECONDS)}
        if is_api_request(request):
            return JSONResponse({"detail": DATABASE_DOWN_MESSAGE}, status_code=503, headers=headers)
        context = {"title": "Try again in a moment", "message": DATABASE_DOWN_MESSAGE}
        page = self.render(request, "error.html", context, status_code=503)
        page.headers.update(headers)
        return page
