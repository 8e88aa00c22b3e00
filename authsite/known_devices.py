"""Device cookies: a browser's signed note of the accounts it has signed in to. No HTTP here.

Behind a proxy that is not trusted, every client shares the proxy's address, and a stranger's
wrong guesses would lock the owner out with everyone else (issue 12, item 11). OWASP's answer is
a device cookie: a login presenting a valid one for the account it names is counted in that
cookie's own bucket, not in the name-and-address and address buckets strangers fill. Each entry
is `user_id:nonce:signature`; the nonce names the bucket, the HMAC (keyed by the site's secret)
makes entries unforgeable. A stolen cookie gets its own few guesses, no more.
"""

import base64
import hashlib
import hmac
import secrets

# A browser shared by a household or a desk remembers this many accounts, the latest first.
MAX_ACCOUNTS = 5
NONCE_BYTES = 16
SIGNATURE_CHARS = 22  # 128 bits of the HMAC, base64url
ENTRY_SEPARATOR = "~"
MAX_COOKIE_CHARS = 600


class DeviceCookies:
    def __init__(self, secret_key: str):
        # A key of its own, derived from the site's secret, so no other signed value can pass for an entry.
        self._key = hmac.new(secret_key.encode(), b"authsite device cookie", hashlib.sha256).digest()

    def accounts(self, value: str | None) -> dict[int, str]:
        """{user id: nonce} of the cookie's entries that carry a valid signature."""
        found: dict[int, str] = {}
        if not value or len(value) > MAX_COOKIE_CHARS:
            return found
        for entry in value.split(ENTRY_SEPARATOR)[:MAX_ACCOUNTS]:
            user_id, _, rest = entry.partition(":")
            nonce, _, signature = rest.partition(":")
            if user_id.isdigit() and nonce and hmac.compare_digest(signature, self._sign(user_id, nonce)):
                found.setdefault(int(user_id), nonce)
        return found

    def with_account(self, value: str | None, user_id: int) -> str:
        """The cookie's new value after `user_id` signed in: its entry first (the same nonce if it
        had one), then the others, at most MAX_ACCOUNTS."""
        known = self.accounts(value)
        nonce = known.pop(user_id, None) or secrets.token_urlsafe(NONCE_BYTES)
        entries = [(user_id, nonce), *known.items()][:MAX_ACCOUNTS]
        return ENTRY_SEPARATOR.join(f"{uid}:{n}:{self._sign(str(uid), n)}" for uid, n in entries)

    def _sign(self, user_id: str, nonce: str) -> str:
        digest = hmac.new(self._key, f"{user_id}|{nonce}".encode(), hashlib.sha256).digest()
        return base64.urlsafe_b64encode(digest).decode()[:SIGNATURE_CHARS]
