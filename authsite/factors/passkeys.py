"""Passkeys (WebAuthn): registering one, and checking an assertion made with one. No HTTP here.

The ceremony checks themselves (client data, origin, relying-party hash, flags, the attestation
and the signature) are py_webauthn's, Duo's maintained server library: they are easy to get subtly
wrong, and it follows the spec's steps one by one. What stays here is what the spec leaves to the
relying party:

- The relying party is the host of AUTHSITE_BASE_URL and the only origin accepted is the base
  URL's. An IP address cannot be a relying party id, so such a site offers no passkeys at all.
- A challenge is 32 random bytes that travel sealed in a cookie of the browser that asked
  (authsite/sealing.py), good for five minutes; asking for one writes nothing to the database.
  Presenting it spends it (a row in `used_challenge`, whose primary key refuses a second use), so
  a replayed assertion is refused even from an authenticator whose counter stays at zero.
- User verification is required both when a passkey is made and when it is used: a passkey login
  then stands for both factors.
- Sign counters: an authenticator that counts must count up; one that reports a count not above
  the last one seen may have been copied (WebAuthn, 6.1.1). That assertion is refused, the
  passkey is marked, and the owner is told; a counter that stays at zero (synced passkeys) is fine.

`py_webauthn` is imported on first use, like the other second factors' libraries.
"""

import base64
import binascii
import hashlib
import ipaddress
import json
import os
import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import cached_property
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy import Connection, bindparam, delete, func, insert, select, update
from sqlalchemy.exc import IntegrityError

from authsite.models import Passkey, UsedChallenge
from authsite.sealing import Box, derive_key

CHALLENGE_BYTES = 32
CHALLENGE_SECONDS = 5 * 60
CEREMONY_TIMEOUT_MS = CHALLENGE_SECONDS * 1000
NAME_MAX = 64
MAX_CREDENTIAL_ID_BYTES = 1023  # WebAuthn, 5.1 (its base64url fits the 1400 characters of the column)
MAX_CREDENTIAL_CHARS = 16_384  # far above any real credential; the body limit caps it anyway
PASSKEY = "passkey"
# The transports WebAuthn names (AuthenticatorTransport); anything else a browser sends is dropped.
TRANSPORTS = frozenset({"usb", "nfc", "ble", "internal", "hybrid", "smart-card"})

_key = Passkey.__table__
_used = UsedChallenge.__table__

_OF_USER = select(_key).where(_key.c.user_id == bindparam("user_id")).order_by(_key.c.created_at, _key.c.id)
_BY_CREDENTIAL = select(_key).where(_key.c.credential_id == bindparam("credential_id"))
_COUNT = select(func.count()).select_from(_key).where(_key.c.user_id == bindparam("user_id"))
_ADD = insert(_key)
_REMOVE = delete(_key).where(_key.c.id == bindparam("passkey_id"), _key.c.user_id == bindparam("user_id"))
_USED = (
    update(_key).where(_key.c.id == bindparam("passkey_id"))
    .values(sign_count=bindparam("sign_count"), last_used_at=bindparam("now"), backed_up=bindparam("backed_up"))
)
_SUSPECT = update(_key).where(_key.c.id == bindparam("passkey_id")).values(clone_suspected_at=bindparam("now"))
_SPEND_CHALLENGE = insert(_used)


class PasskeyRefused(Exception):
    """The browser's answer is not one this site accepts; `str()` is a message for the person."""


@dataclass(frozen=True)
class RelyingParty:
    """Who the passkeys are for: the base URL's host (`id`) and origin; `unavailable` says why not."""

    id: str
    origin: str
    name: str
    unavailable: str | None = None

    @classmethod
    def from_base_url(cls, base_url: str, *, name: str) -> "RelyingParty":
        parts = urlsplit(base_url)
        host = (parts.hostname or "").lower()
        default_port = {"http": 80, "https": 443}.get(parts.scheme)
        port = f":{parts.port}" if parts.port and parts.port != default_port else ""
        origin = f"{parts.scheme}://{host if ':' not in host else f'[{host}]'}{port}"
        unavailable = None
        try:
            ipaddress.ip_address(host)
            unavailable = (f"Passkeys need the site to be reached by a host name, and AUTHSITE_BASE_URL "
                           f"({base_url}) is an IP address. Set it to the name people use, such as "
                           "http://localhost:8000 on this computer.")
        except ValueError:
            pass
        if not unavailable and parts.scheme != "https" and host != "localhost" and not host.endswith(".localhost"):
            unavailable = (f"Browsers offer passkeys only on https sites (or localhost), and AUTHSITE_BASE_URL "
                           f"({base_url}) is plain http.")
        return cls(id=host, origin=origin, name=name, unavailable=unavailable)

    @property
    def available(self) -> bool:
        return self.unavailable is None


@dataclass(frozen=True)
class PasskeyInfo:
    """What the security page and the API show of a passkey: never its key."""

    id: int
    name: str
    created_at: datetime
    last_used_at: datetime | None
    backed_up: bool
    clone_suspected_at: datetime | None


@dataclass(frozen=True)
class Assertion:
    """A verified passkey answer: whose, which passkey, and whether it looked copied."""

    user_id: int | None = None
    passkey_id: int | None = None
    ok: bool = False
    clone_suspected: bool = False
    reason: str = "passkey_refused"

    @property
    def refused(self) -> bool:
        return not self.ok


@dataclass(frozen=True)
class PasskeyAnswer:
    """What a browser sent back from `navigator.credentials.get()`, with the challenge cookie it holds."""

    credential: Any
    sealed_challenge: str | None

    def __repr__(self) -> str:
        return "PasskeyAnswer(...)"


class Passkeys:
    def __init__(self, secret_key: str, *, relying_party: RelyingParty):
        self.rp = relying_party
        self._secret_key = secret_key

    @cached_property
    def _challenges(self) -> Box:
        return Box(derive_key(self._secret_key, "passkey challenges"))

    @property
    def available(self) -> bool:
        return self.rp.available

    # Options (the first half of each ceremony): nothing is written anywhere.

    def registration_options(self, conn: Connection, *, user_id: int, username: str, display_name: str,
                             bound_to: str) -> tuple[dict, str]:
        """Options for `navigator.credentials.create()` (as JSON) and the sealed challenge for the
        cookie; the challenge is good only for this user and session (`bound_to`)."""
        from webauthn import generate_registration_options, options_to_json
        from webauthn.helpers.structs import (
            AuthenticatorSelectionCriteria, PublicKeyCredentialDescriptor, ResidentKeyRequirement,
            UserVerificationRequirement,
        )

        rows = conn.execute(_OF_USER, {"user_id": user_id}).all()
        handle = _unb64(rows[0].user_handle) if rows else os.urandom(32)
        challenge = os.urandom(CHALLENGE_BYTES)
        options = generate_registration_options(
            rp_id=self.rp.id, rp_name=self.rp.name, user_name=username, user_id=handle,
            user_display_name=display_name, challenge=challenge, timeout=CEREMONY_TIMEOUT_MS,
            authenticator_selection=AuthenticatorSelectionCriteria(
                resident_key=ResidentKeyRequirement.REQUIRED,
                user_verification=UserVerificationRequirement.REQUIRED,
            ),
            # The same authenticator is not registered twice for one account.
            exclude_credentials=[PublicKeyCredentialDescriptor(id=_unb64(row.credential_id)) for row in rows],
        )
        sealed = self._challenges.seal_for(
            {"challenge": _b64(challenge), "handle": _b64(handle)},
            context=_creation_context(user_id, bound_to), lifetime=CHALLENGE_SECONDS,
        )
        return json.loads(options_to_json(options)), sealed

    def authentication_options(self) -> tuple[dict, str]:
        """Options for `navigator.credentials.get()` and the sealed challenge. No credentials are
        listed: the authenticator offers its own (discoverable) ones, so the options tell nobody
        which passkeys an account has."""
        from webauthn import generate_authentication_options, options_to_json
        from webauthn.helpers.structs import UserVerificationRequirement

        challenge = os.urandom(CHALLENGE_BYTES)
        options = generate_authentication_options(
            rp_id=self.rp.id, challenge=challenge, timeout=CEREMONY_TIMEOUT_MS,
            user_verification=UserVerificationRequirement.REQUIRED,
        )
        sealed = self._challenges.seal_for({"challenge": _b64(challenge)}, context=_REQUEST_CONTEXT,
                                           lifetime=CHALLENGE_SECONDS)
        return json.loads(options_to_json(options)), sealed

    # Registering

    def register(self, conn: Connection, *, user_id: int, bound_to: str, sealed_challenge: str | None,
                 credential: Any, name: str, now: datetime) -> PasskeyInfo:
        """Check the browser's answer to `registration_options` and keep the new passkey. Raises
        PasskeyRefused. The caller commits."""
        from webauthn import verify_registration_response
        from webauthn.helpers import decode_credential_public_key, decoded_public_key_to_cryptography
        from webauthn.helpers.exceptions import WebAuthnException

        opened = self._challenges.open_for(sealed_challenge, context=_creation_context(user_id, bound_to))
        if opened is None:
            raise PasskeyRefused("That took too long, or began in another window. Try adding the passkey again.")
        credential = _credential_dict(credential)
        if not _spend_challenge(conn, opened["challenge"], now):
            raise PasskeyRefused("That passkey answer was already used. Try adding the passkey again.")
        try:
            verified = verify_registration_response(
                credential=credential, expected_challenge=_unb64(opened["challenge"]), expected_rp_id=self.rp.id,
                expected_origin=self.rp.origin, require_user_verification=True,
            )
            # WebAuthn 7.1 step 24: no longer than 1023 bytes. And "none" attestation vouches for
            # nothing: the key must be one a signature can be checked with.
            if len(verified.credential_id) > MAX_CREDENTIAL_ID_BYTES:
                raise ValueError("credential id too long")
            decoded_public_key_to_cryptography(decode_credential_public_key(verified.credential_public_key))
        except (WebAuthnException, ValueError, KeyError, TypeError, IndexError, binascii.Error) as exc:
            raise PasskeyRefused("The browser's answer could not be checked, so no passkey was added. "
                                 "Try again; if it keeps failing, try another browser or device.") from exc
        transports = credential.get("response", {}).get("transports") or []
        try:
            passkey_id = conn.execute(_ADD.returning(_key.c.id), {
                "user_id": user_id, "credential_id": _b64(verified.credential_id),
                "user_handle": opened["handle"], "public_key": verified.credential_public_key,
                "sign_count": verified.sign_count, "name": name[:NAME_MAX],
                "transports": _known_transports(transports),
                "aaguid": str(verified.aaguid)[:36], "backed_up": bool(verified.credential_backed_up),
                "created_at": now, "last_used_at": None, "clone_suspected_at": None,
            }).scalar_one()
        except IntegrityError:
            conn.rollback()
            raise PasskeyRefused("That passkey is registered already.") from None
        return PasskeyInfo(passkey_id, name[:NAME_MAX], now, None, bool(verified.credential_backed_up), None)

    # Using one

    def check(self, conn: Connection, *, answer: PasskeyAnswer, now: datetime, user_id: int | None = None,
              spend: bool = True) -> Assertion:
        """Verify an assertion against the challenge its browser holds. `user_id`: the passkey must
        be this account's (a second step, a confirmation). A right one moves the passkey's counter
        on; the caller commits, or rolls back on its own failure (the challenge is then unspent)."""
        from webauthn import verify_authentication_response
        from webauthn.helpers.exceptions import WebAuthnException

        opened = self._challenges.open_for(answer.sealed_challenge, context=_REQUEST_CONTEXT)
        credential = _credential_dict(answer.credential)
        row = _row_for(conn, credential)
        owner = row.user_id if row is not None else None
        if opened is None or row is None or (user_id is not None and owner != user_id):
            return Assertion(user_id=owner if user_id is None or owner == user_id else None,
                             reason="passkey_expired" if opened is None else "passkey_unknown")
        if row.clone_suspected_at is not None:
            # Once its counter went back, a copy may be out there that can count up again at will:
            # the passkey stays refused until its owner removes it (and adds a new one).
            return Assertion(user_id=owner, reason="passkey_cloned")
        handle = _response_field(credential, "userHandle")
        if handle and handle.rstrip("=") != row.user_handle:
            return Assertion(user_id=owner)
        if spend and not _spend_challenge(conn, opened["challenge"], now):
            return Assertion(user_id=owner, reason="passkey_replayed")
        try:
            verified = verify_authentication_response(
                credential=credential, expected_challenge=_unb64(opened["challenge"]), expected_rp_id=self.rp.id,
                expected_origin=self.rp.origin, credential_public_key=row.public_key,
                # The counter is compared below, where a copied authenticator is told apart.
                credential_current_sign_count=0, require_user_verification=True,
            )
        except (WebAuthnException, ValueError, KeyError, TypeError, binascii.Error):
            return Assertion(user_id=owner)
        counted = verified.new_sign_count > 0 or row.sign_count > 0
        if counted and verified.new_sign_count <= row.sign_count:
            return Assertion(user_id=owner, passkey_id=row.id, clone_suspected=True, reason="passkey_cloned")
        conn.execute(_USED, {"passkey_id": row.id, "sign_count": verified.new_sign_count, "now": now,
                             "backed_up": bool(verified.credential_backed_up)})
        return Assertion(user_id=owner, passkey_id=row.id, ok=True)

    @staticmethod
    def mark_suspected_clone(conn: Connection, *, passkey_id: int, now: datetime) -> None:
        """Shown on the security page until the owner removes the passkey. The caller commits."""
        conn.execute(_SUSPECT, {"passkey_id": passkey_id, "now": now})


def owner_of(conn: Connection, credential: Any) -> int | None:
    """The account a passkey answer names (by its credential id), before anything is verified."""
    row = _row_for(conn, _credential_dict(credential))
    return row.user_id if row is not None else None


def list_passkeys(conn: Connection, *, user_id: int) -> list[PasskeyInfo]:
    return [
        PasskeyInfo(row.id, row.name, row.created_at, row.last_used_at, row.backed_up, row.clone_suspected_at)
        for row in conn.execute(_OF_USER, {"user_id": user_id})
    ]


def count_passkeys(conn: Connection, *, user_id: int) -> int:
    return conn.execute(_COUNT, {"user_id": user_id}).scalar_one()


def remove_passkey(conn: Connection, *, user_id: int, passkey_id: int) -> bool:
    """One of the user's own passkeys; False if there is no such passkey of theirs."""
    return conn.execute(_REMOVE, {"passkey_id": passkey_id, "user_id": user_id}).rowcount == 1


def remove_all_passkeys(conn: Connection, *, user_id: int) -> bool:
    return conn.execute(delete(_key).where(_key.c.user_id == user_id)).rowcount > 0


def purge_used_challenges(conn: Connection, *, now: datetime) -> None:
    conn.execute(delete(_used).where(_used.c.expires_at <= now))


def default_name(device: str) -> str:
    """What a passkey is called when its owner types nothing: where it was made."""
    return f"Passkey on {device}"[:NAME_MAX] if device else "Passkey"


def clean_name(name: str | None) -> str:
    """A name as typed, without control characters or runs of spaces, at most NAME_MAX long."""
    printable = "".join(char if char.isprintable() else " " for char in (name or ""))
    return " ".join(printable.split())[:NAME_MAX]


def _row_for(conn: Connection, credential: dict):
    credential_id = credential.get("id") if isinstance(credential, dict) else None
    # base64url only: anything else (a lone surrogate, a NUL) could not even be sent to the database.
    if not isinstance(credential_id, str) or len(credential_id) > 1400 or not _BASE64URL.fullmatch(credential_id):
        return None
    return conn.execute(_BY_CREDENTIAL, {"credential_id": credential_id.rstrip("=")}).first()


_BASE64URL = re.compile(r"[A-Za-z0-9_-]+={0,2}")


def _spend_challenge(conn: Connection, challenge: str, now: datetime) -> bool:
    """True the first time a challenge is presented; the caller commits."""
    digest = hashlib.sha256(challenge.encode()).hexdigest()
    if conn.execute(select(_used.c.challenge_hash).where(_used.c.challenge_hash == digest)).first():
        return False
    try:
        conn.execute(_SPEND_CHALLENGE, {"challenge_hash": digest,
                                        "expires_at": now + timedelta(seconds=CHALLENGE_SECONDS)})
    except IntegrityError:  # spent by a racing request between the two statements
        conn.rollback()
        return False
    return True


def _known_transports(transports: Any) -> list[str]:
    if not isinstance(transports, list):
        return []
    return sorted({item for item in transports if isinstance(item, str) and item in TRANSPORTS})


def _credential_dict(credential: Any) -> dict:
    """The credential as a dict, or an empty one (which every check then refuses)."""
    if isinstance(credential, str):
        if len(credential) > MAX_CREDENTIAL_CHARS:
            return {}
        try:
            credential = json.loads(credential)
        except (ValueError, RecursionError):
            return {}
    return credential if isinstance(credential, dict) else {}


def _response_field(credential: dict, name: str) -> str | None:
    response = credential.get("response")
    value = response.get(name) if isinstance(response, dict) else None
    return value if isinstance(value, str) else None


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


_REQUEST_CONTEXT = "passkey request"


def _creation_context(user_id: int, bound_to: str) -> str:
    return f"passkey creation|user {user_id}|{bound_to}"
