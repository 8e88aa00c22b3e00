"""CSRF: tokens tied to the visitor, and the origin check. The one place these are decided."""

import base64
import hashlib
import hmac
import secrets
from urllib.parse import urlsplit

from starlette.requests import HTTPConnection

from authsite import cookies, tokens
from authsite.middleware import SESSION_SCOPE_KEY

NONCE_BYTES = 16
TRUSTED_FETCH_SITES = {"same-origin", "none"}


class CsrfFailed(Exception):
    """A state-changing request we refuse: missing/foreign token or a cross-site origin."""


class Csrf:
    """Tokens are HMACs of what ties the visitor to us: the session once logged in,
    the CSRF cookie before. Logging in changes the session, so the pre-login token
    dies with it (rotation). Each render adds a fresh nonce, so no token repeats
    on the page (nothing for a compression side channel to recover)."""

    def __init__(self, secret_key: str, *, cookie_secure: str):
        self._key = secret_key.encode()
        self.cookie_secure = cookie_secure

    def token_for(self, conn: HTTPConnection) -> tuple[str, str | None]:
        """A token for a form, and a new CSRF cookie value to set if the visitor has none."""
        binding, new_cookie = self._binding(conn), None
        if binding is None:
            new_cookie = tokens.new_token()
            binding = "anon:" + new_cookie
        nonce = secrets.token_urlsafe(NONCE_BYTES)
        return f"{nonce}.{self._sign(binding, nonce)}", new_cookie

    def is_valid(self, conn: HTTPConnection, token: str | None) -> bool:
        binding = self._binding(conn)
        if binding is None or not token or len(token) > 200:
            return False
        nonce, _, signature = token.partition(".")
        return hmac.compare_digest(signature, self._sign(binding, nonce))

    def _binding(self, conn: HTTPConnection) -> str | None:
        session = conn.scope.get(SESSION_SCOPE_KEY)
        if session is not None:
            return "session:" + session.token_hash
        secure = cookies.is_secure(conn.scope, self.cookie_secure)
        value = conn.cookies.get(cookies.csrf_cookie_name(secure))
        if value and tokens.is_well_formed(value):
            return "anon:" + value
        return None

    def _sign(self, binding: str, nonce: str) -> str:
        digest = hmac.new(self._key, f"{binding}|{nonce}".encode(), hashlib.sha256).digest()
        return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def is_cross_site(conn: HTTPConnection) -> bool:
    """True when the browser tells us the request came from another site.

    Browsers send Sec-Fetch-Site and Origin; scripts and old browsers send
    neither, and are then judged by the token alone."""
    fetch_site = conn.headers.get("sec-fetch-site")
    if fetch_site is not None and fetch_site not in TRUSTED_FETCH_SITES:
        return True
    origin = conn.headers.get("origin")
    if origin is None:
        return False
    if origin == "null":
        return True
    # Compare host and port only: a TLS-terminating proxy makes our own
    # scheme look like http while the browser's Origin says https.
    try:
        origin_host = urlsplit(origin).netloc.lower()
    except ValueError:
        return True
    return origin_host != conn.headers.get("host", "").lower()
