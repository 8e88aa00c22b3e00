"""Encryption of small secrets with keys derived from the site's secret key. No HTTP here.

Authenticator secrets are kept encrypted at rest, and a setup in progress travels in its form as
a sealed value, so nothing half-made is ever written to the database. Both are AES-256-GCM from
`cryptography` (authenticated: a changed byte fails to open, never decrypts to something else).
Each sealed value names what it is for and whom it belongs to (the GCM associated data), so a
ciphertext copied into another user's row, or another purpose, does not open there.

Every key is derived from the secret key with HKDF under a label of its own: the secret key
itself is never used to encrypt, and no two uses share a key. `cryptography` is imported on first
use, so a worker that never meets a second factor does not carry it.
"""

import base64
import binascii
import json
import os
import time

KEY_BYTES = 32
NONCE_BYTES = 12  # GCM's standard nonce; random, and far from its 2**32 safe limit per key
VERSION = "1"  # the first field of every sealed value, so the scheme can change later


def derive_key(secret_key: str, label: str) -> bytes:
    """A key of its own for one use (`label`), from the site's secret key."""
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.kdf.hkdf import HKDF

    hkdf = HKDF(algorithm=hashes.SHA256(), length=KEY_BYTES, salt=None, info=f"authsite {label}".encode())
    return hkdf.derive(secret_key.encode())


class Box:
    """Seals bytes under one derived key; `context` binds a sealed value to its owner and use."""

    def __init__(self, key: bytes):
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM

        self._aead = AESGCM(key)

    def seal(self, data: bytes, *, context: str) -> str:
        nonce = os.urandom(NONCE_BYTES)
        sealed = self._aead.encrypt(nonce, data, context.encode())
        return f"{VERSION}.{_b64(nonce + sealed)}"

    def open(self, value: str | None, *, context: str) -> bytes | None:
        """The sealed bytes, or None for anything forged, altered, sealed elsewhere or malformed."""
        if not value or len(value) > 4096:
            return None
        version, _, body = value.partition(".")
        if version != VERSION:
            return None
        try:
            raw = base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))
        except (binascii.Error, ValueError):
            return None
        if len(raw) <= NONCE_BYTES:
            return None
        from cryptography.exceptions import InvalidTag

        try:
            return self._aead.decrypt(raw[:NONCE_BYTES], raw[NONCE_BYTES:], context.encode())
        except InvalidTag:
            return None

    def seal_for(self, data: dict, *, context: str, lifetime: int) -> str:
        """A JSON value that opens (with `open_for`) for `lifetime` seconds."""
        payload = json.dumps({"until": int(time.time()) + lifetime, "data": data}, separators=(",", ":"))
        return self.seal(payload.encode(), context=context)

    def open_for(self, value: str | None, *, context: str) -> dict | None:
        raw = self.open(value, context=context)
        if raw is None:
            return None
        payload = json.loads(raw)
        return payload["data"] if payload["until"] >= time.time() else None


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()
