import hashlib
import re
import secrets

# 32 random bytes = 256 bits, comfortably above the 128-bit floor.
TOKEN_BYTES = 32
TOKEN_PATTERN = re.compile(r"[A-Za-z0-9_-]{43}")


def new_token() -> str:
    return secrets.token_urlsafe(TOKEN_BYTES)


def hash_token(token: str) -> str:
    """What the database keeps instead of the token itself."""
    return hashlib.sha256(token.encode("ascii")).hexdigest()


def is_well_formed(token: str) -> bool:
    """Cheap shape check so junk cookies never reach the database."""
    return TOKEN_PATTERN.fullmatch(token) is not None
