"""Recovery codes: ten single-use codes for when the authenticator app is lost. No I/O.

Each code is 12 characters from a 32-letter alphabet (60 bits), shown as `xxxx-xxxx-xxxx`. Only a
keyed hash of a code is stored (HMAC-SHA-256 under a key derived from the site's secret key), so
a copy of the database alone cannot be searched for the codes, and a code is found by its hash
with one indexed lookup instead of trying ten slow hashes.
"""

import hashlib
import hmac
import secrets

COUNT = 10
CHARS = 12
GROUP = 4
# Crockford's base32: digits and lower-case letters without i, l, o and u, so nothing is misread;
# a typed i or l reads as 1 and an o as 0.
ALPHABET = "0123456789abcdefghjkmnpqrstvwxyz"
READ_AS = str.maketrans({"i": "1", "l": "1", "o": "0"})
# The security page warns when this many or fewer are left.
FEW_LEFT = 3


def new_codes() -> list[str]:
    return [_shown("".join(secrets.choice(ALPHABET) for _ in range(CHARS))) for _ in range(COUNT)]


def normalise(code: str) -> str | None:
    """The code as stored (lower case, no dashes or spaces), or None if it cannot be one."""
    plain = "".join(code.split()).replace("-", "").lower().translate(READ_AS)
    if len(plain) != CHARS or any(char not in ALPHABET for char in plain):
        return None
    return plain


def _shown(plain: str) -> str:
    return "-".join(plain[i:i + GROUP] for i in range(0, CHARS, GROUP))


class CodeHasher:
    def __init__(self, key: bytes):
        self._key = key

    def digest(self, plain: str) -> str:
        return hmac.new(self._key, plain.encode("ascii"), hashlib.sha256).hexdigest()
