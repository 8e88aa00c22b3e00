"""Security headers on every response, and no caching of private ones."""

from starlette.types import Scope

# Same-origin resources only, no inline script or style, never framed.
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; img-src 'self' data:; object-src 'none'; base-uri 'none'; "
    "form-action 'self'; frame-ancestors 'none'"
)
# Sent only on responses that came over https: browsers then refuse plain http
# to this host for a year, so a network attacker cannot strip TLS later.
STRICT_TRANSPORT_SECURITY = "max-age=31536000"
HSTS = b"strict-transport-security"
CACHE_CONTROL = b"cache-control"
STATIC_HEADERS = {
    "content-security-policy": CONTENT_SECURITY_POLICY,
    "x-content-type-options": "nosniff",
    "x-frame-options": "DENY",
    "referrer-policy": "same-origin",
}


class SecurityHeaders:
    def __init__(self, *, page_headers: bool = True):
        self.send_page_headers = page_headers
        # Encoded once: this runs on every response.
        self.page_headers = [(n.encode("latin-1"), v.encode("latin-1")) for n, v in STATIC_HEADERS.items()
                             if page_headers]
        self.page_header_names = frozenset(name for name, _ in self.page_headers)
        self.hsts = (HSTS, STRICT_TRANSPORT_SECURITY.encode("latin-1"))

    def merged(self, scope: Scope, headers) -> list[tuple[bytes, bytes]]:
        """The response's own headers win; ours fill in what it did not set."""
        headers = list(headers)
        present = {name.lower() for name, _ in headers}
        if present.isdisjoint(self.page_header_names):  # the usual case: add them all at once
            headers += self.page_headers
        else:
            headers.extend(pair for pair in self.page_headers if pair[0] not in present)
        if self.send_page_headers and scope.get("scheme") == "https" and HSTS not in present:
            headers.append(self.hsts)
        if _is_private(scope, present):
            # A shared cache must never keep a page meant for one user
            # or a response that hands out a session cookie.
            if CACHE_CONTROL in present:
                headers = [pair for pair in headers if pair[0].lower() != CACHE_CONTROL]
            headers.append((CACHE_CONTROL, b"no-store"))
        return headers


def _is_private(scope: Scope, present: set[bytes]) -> bool:
    user = scope.get("user")
    return bool(user is not None and user.is_authenticated) or b"set-cookie" in present


# Pages whose URL or body holds a secret (a reset token) send at most our origin
# as a Referer, never the path. Not `no-referrer`: under that policy a browser
# sends `Origin: null` with the page's own form POSTs (the Fetch standard), which
# the CSRF origin check rightly refuses, so the reset form could never be sent.
SECRET_PAGE_REFERRER_POLICY = "strict-origin"


def no_referrer_path(response):
    """For pages whose URL holds a secret: never send the URL on as a Referer."""
    response.headers["referrer-policy"] = SECRET_PAGE_REFERRER_POLICY
    return response
