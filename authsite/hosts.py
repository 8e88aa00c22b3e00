"""Answer only to the host names the site is configured for (DNS rebinding)."""

from starlette.types import Scope, Send

ANY_HOST = "*"
REFUSAL = (
    "This site does not answer to the host name this request was sent to. If the name is the "
    "site's own, add it to AUTHSITE_ALLOWED_HOSTS (comma-separated names, or * for any)."
).encode()
REFUSAL_HEADERS = [
    (b"content-type", b"text/plain; charset=utf-8"),
    (b"content-length", str(len(REFUSAL)).encode()),
    (b"x-content-type-options", b"nosniff"),
]


class AllowedHosts:
    """Checked first, so a refused request touches nothing else: no session lookup, no database.

    A page on an attacker's name that later resolves to our address (DNS rebinding) is
    same-origin with itself, so the browser lets its scripts read our answers and the
    origin checks see nothing foreign; only the Host header tells the name it was meant for."""

    def __init__(self, allowed: frozenset[str]):
        self.allowed = None if ANY_HOST in allowed else allowed

    def allow(self, scope: Scope) -> bool:
        return self.allowed is None or host_name(scope) in self.allowed

    @staticmethod
    async def refuse(scope: Scope, send: Send) -> None:
        if scope["type"] == "websocket":
            await send({"type": "websocket.close", "code": 1008})
            return
        await send({"type": "http.response.start", "status": 400, "headers": REFUSAL_HEADERS})
        await send({"type": "http.response.body", "body": REFUSAL})


def host_name(scope: Scope) -> str:
    """The request's Host without its port, lower-cased ('[::1]:8000' -> '::1'); '' if it has none."""
    for key, value in scope["headers"]:
        if key == b"host":
            host = value.decode("latin-1").lower()
            break
    else:
        return ""
    if host.startswith("["):
        return host[1:].partition("]")[0]
    if host.count(":") == 1:
        host = host.partition(":")[0]
    # 'example.com.' is the same name written fully qualified.
    return host[:-1] if host.endswith(".") else host
