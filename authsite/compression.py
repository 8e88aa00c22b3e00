"""Whether and how a text answer is gzipped: the one place that decides.

Pages carry a CSRF token, so compressing them could in principle open a BREACH-style side
channel (an attacker who reflects guesses into a page and watches its size). It cannot here:
every render signs the token with a fresh nonce (authsite/csrf.py), so no secret repeats from
one answer to the next, and the pages that show a lasting secret (recovery codes, an
authenticator secret, a reset link for an admin) answer only a POST that carries our CSRF token.
"""

import gzip

# Below about a kilobyte the gzip header and a TCP packet's worth of savings cancel out.
MINIMUM_BYTES = 1024
# zlib's default: close to level 9's size on HTML and CSS at a third of the time.
LEVEL = 6


def accepts_gzip(accept_encoding: str | None) -> bool:
    """True when an Accept-Encoding header admits gzip (`gzip;q=0` refuses it; `*` admits it)."""
    if not accept_encoding:
        return False
    admitted = {}
    for item in accept_encoding.lower().split(","):
        coding, _, params = item.partition(";")
        quality = 1.0
        for param in params.split(";"):
            name, _, value = param.strip().partition("=")
            if name == "q":
                try:
                    quality = float(value)
                except ValueError:
                    quality = 0.0
        admitted[coding.strip()] = quality > 0
    return admitted.get("gzip", admitted.get("x-gzip", admitted.get("*", False)))


def compress(body: bytes) -> bytes:
    """The same bytes every time for the same input (mtime 0): an ETag over them stays stable."""
    return gzip.compress(body, compresslevel=LEVEL, mtime=0)


def worth_compressing(body: bytes) -> bool:
    return len(body) >= MINIMUM_BYTES
