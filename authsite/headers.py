"""Pure ASGI: security headers on every response, and no caching of private ones."""

from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

# Same-origin resources only, no inline script or style, never framed.
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; img-src 'self' data:; object-src 'none'; base-uri 'none'; "
    "form-action 'self'; frame-ancestors 'none'"
)
# Sent only on responses that came over https: browsers then refuse plain http
# to this host for a year, so a network attacker cannot strip TLS later.
STRICT_TRANSPORT_SECURITY = "max-age=31536000"
STATIC_HEADERS = {
    "content-security-policy": CONTENT_SECURITY_POLICY,
    "x-content-type-options": "nosniff",
    "x-frame-options": "DENY",
    "referrer-policy": "same-origin",
}


class SecurityHeadersMiddleware:
    def __init__(self, app: ASGIApp, *, page_headers: bool = True):
        self.app = app
        self.page_headers = page_headers

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                if self.page_headers:
                    for name, value in STATIC_HEADERS.items():
                        headers.setdefault(name, value)
                    if scope.get("scheme") == "https":
                        headers.setdefault("strict-transport-security", STRICT_TRANSPORT_SECURITY)
                if _is_private(scope, headers):
                    # A shared cache must never keep a page meant for one user
                    # or a response that hands out a session cookie.
                    headers["cache-control"] = "no-store"
            await send(message)

        await self.app(scope, receive, send_with_headers)


def _is_private(scope: Scope, headers: MutableHeaders) -> bool:
    user = scope.get("user")
    return bool(user is not None and user.is_authenticated) or "set-cookie" in headers


# Pages whose URL or body holds a secret (a reset token) send at most our origin
# as a Referer, never the path. Not `no-referrer`: under that policy a browser
# sends `Origin: null` with the page's own form POSTs (the Fetch standard), which
# the CSRF origin check rightly refuses, so the reset form could never be sent.
SECRET_PAGE_REFERRER_POLICY = "strict-origin"


def no_referrer_path(response):
    """For pages whose URL holds a secret: never send the URL on as a Referer."""
    response.headers["referrer-policy"] = SECRET_PAGE_REFERRER_POLICY
    return response
