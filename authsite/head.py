"""HEAD on a GET route answers as GET would, without the body (RFC 9110, 9.3.2).

Starlette's own routes answer HEAD where they answer GET; FastAPI's do not, and answer 405,
which uptime monitors and link checkers read as "down". Routes that take HEAD themselves
(Starlette's, an explicit HEAD route, a mount, authsite's route gate) are left to do so."""

from starlette.routing import BaseRoute, Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send


def takes_head(routes: list[BaseRoute], scope: Scope) -> bool:
    """Whether one of `routes` answers this HEAD request itself."""
    return any(route.matches(scope)[0] is Match.FULL for route in routes)


async def answer_as_get(app: ASGIApp, scope: Scope, receive: Receive, send: Send) -> None:
    """Run `app` as for GET, and send its status and headers (Content-Length included) without the body."""

    async def headers_only(message: Message) -> None:
        if message["type"] == "http.response.body":
            if message.get("more_body", False):
                return
            message = {"type": "http.response.body", "body": b""}
        await send(message)

    # A copy: the server keeps its own scope saying HEAD, so it sends no body either.
    await app({**scope, "method": "GET"}, receive, headers_only)
