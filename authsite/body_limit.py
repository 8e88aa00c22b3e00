"""Refuse request bodies over a limit with 413 before anything parses them."""

from starlette.exceptions import HTTPException
from starlette.responses import PlainTextResponse
from starlette.types import Message, Receive, Scope

MAX_BODY_BYTES = 64 * 1024


class BodyLimit:
    def __init__(self, *, max_bytes: int = MAX_BODY_BYTES, prefixes: tuple[str, ...] = ("/",)):
        self.max_bytes = max_bytes
        self.prefixes = prefixes  # the paths whose bodies are read; the host app's own are its to limit

    def declared_too_large(self, scope: Scope) -> PlainTextResponse | None:
        """The 413 for a body whose Content-Length is over the limit, before a byte of it is read."""
        declared = _content_length(scope)
        if declared is not None and declared > self.max_bytes:
            return PlainTextResponse(self._message(), status_code=413, headers={"connection": "close"})
        return None

    def counting(self, receive: Receive) -> Receive:
        """`receive` that stops at the limit: chunked bodies have no length up front."""
        received = 0

        async def counting_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    # The route's exception handling turns this into a 413.
                    raise HTTPException(413, self._message())
            return message

        return counting_receive

    def _message(self) -> str:
        return f"The request body is larger than {self.max_bytes // 1024} KiB; send less."


def _content_length(scope: Scope) -> int | None:
    for key, value in scope["headers"]:
        if key == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None
