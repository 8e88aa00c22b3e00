"""A software passkey for the server tests: what a phone or a security key does in a WebAuthn
ceremony (WebAuthn level 3, sections 6.1 and 6.5), with an ECDSA P-256 key and "none"
attestation, written out so a test can also do what a real authenticator never would (answer
for another origin, replay an answer, turn its counter back)."""

import base64
import hashlib
import json
import os
import struct

import cbor2
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec

UP, UV, BE, BS, AT = 0x01, 0x04, 0x08, 0x10, 0x40


def b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class SoftPasskey:
    """One discoverable credential for one account on one site."""

    def __init__(self, *, origin: str = "http://localhost", counts: bool = True):
        self.origin = origin
        self.counts = counts  # a security key counts its uses; a synced passkey stays at 0
        self.key = ec.generate_private_key(ec.SECP256R1())
        self.credential_id = os.urandom(32)
        self.user_handle: bytes | None = None
        self.rp_id: str | None = None
        self.sign_count = 0

    @property
    def id(self) -> str:
        return b64(self.credential_id)

    def _client_data(self, kind: str, challenge: str, origin: str | None) -> bytes:
        return json.dumps({"type": kind, "challenge": challenge, "origin": origin or self.origin,
                           "crossOrigin": False}).encode()

    def _auth_data(self, rp_id: str, flags: int, extra: bytes = b"") -> bytes:
        return hashlib.sha256(rp_id.encode()).digest() + bytes([flags]) + struct.pack(">I", self.sign_count) + extra

    def create(self, options: dict, *, origin: str | None = None, verified: bool = True) -> dict:
        """The answer to `navigator.credentials.create()` with these options (the API's `publicKey`)."""
        self.rp_id = options["rp"]["id"]
        self.user_handle = unb64(options["user"]["id"])
        numbers = self.key.public_key().public_numbers()
        cose = cbor2.dumps({1: 2, 3: -7, -1: 1, -2: numbers.x.to_bytes(32, "big"), -3: numbers.y.to_bytes(32, "big")})
        attested = bytes(16) + struct.pack(">H", len(self.credential_id)) + self.credential_id + cose
        auth_data = self._auth_data(self.rp_id, UP | (UV if verified else 0) | AT, attested)
        attestation = cbor2.dumps({"fmt": "none", "attStmt": {}, "authData": auth_data})
        return {
            "id": self.id, "rawId": self.id, "type": "public-key", "authenticatorAttachment": "platform",
            "clientExtensionResults": {},
            "response": {
                "clientDataJSON": b64(self._client_data("webauthn.create", options["challenge"], origin)),
                "attestationObject": b64(attestation), "transports": ["internal"],
            },
        }

    def get(self, options: dict, *, origin: str | None = None, verified: bool = True,
            rp_id: str | None = None) -> dict:
        """The answer to `navigator.credentials.get()` with these options."""
        if self.counts:
            self.sign_count += 1
        auth_data = self._auth_data(rp_id or options.get("rpId") or self.rp_id, UP | (UV if verified else 0))
        client_data = self._client_data("webauthn.get", options["challenge"], origin)
        signature = self.key.sign(auth_data + hashlib.sha256(client_data).digest(), ec.ECDSA(hashes.SHA256()))
        return {
            "id": self.id, "rawId": self.id, "type": "public-key", "authenticatorAttachment": "platform",
            "clientExtensionResults": {},
            "response": {
                "clientDataJSON": b64(client_data), "authenticatorData": b64(auth_data),
                "signature": b64(signature), "userHandle": b64(self.user_handle or b""),
            },
        }

    def copy(self) -> "SoftPasskey":
        """The same key and counter in a second device (what a cloned authenticator is)."""
        twin = SoftPasskey(origin=self.origin, counts=self.counts)
        twin.key, twin.credential_id, twin.user_handle = self.key, self.credential_id, self.user_handle
        twin.rp_id, twin.sign_count = self.rp_id, self.sign_count
        return twin
