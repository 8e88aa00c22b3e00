from datetime import datetime, timezone
from typing import Any

from sqlalchemy import (
    JSON, BigInteger, Boolean, Column, ForeignKey, Index, Integer, LargeBinary, String, UniqueConstraint, false,
)
from sqlmodel import Field, SQLModel

DEFAULT_SCOPES = ["authenticated"]


def _key_type(length: int) -> String:
    # Keys are normalised machine values: byte order ("C") on Postgres makes
    # prefix ranges exact and index-backed whatever the database's locale.
    return String(length).with_variant(String(length, collation="C"), "postgresql")


def utcnow() -> datetime:
    # SQLModel stores aware datetimes as UTC on every database and reads them back aware.
    return datetime.now(timezone.utc)


class User(SQLModel, table=True):
    __tablename__ = "user"

    id: int | None = Field(default=None, primary_key=True)
    username: str = Field(max_length=32)
    # NFKC + case-folded form; the unique index is what makes `Alice` and
    # `ＡＬＩＣＥ` one account, even under simultaneous sign-ups.
    username_key: str = Field(sa_column=Column(_key_type(64), nullable=False, unique=True, index=True))
    first_name: str | None = Field(default=None, max_length=50)
    last_name: str | None = Field(default=None, max_length=50)
    email: str | None = Field(default=None, max_length=254)
    # Case-folded email, unique: one address opens at most one account.
    email_key: str | None = Field(default=None, sa_column=Column(_key_type(254), nullable=True, unique=True, index=True))
    # The name's confusable skeleton (Unicode TR39), unique: `аlice` (Cyrillic а) cannot sit
    # beside `alice`. NULL only for accounts made before it existed whose skeleton was taken.
    username_skeleton: str | None = Field(
        default=None, sa_column=Column(_key_type(128), nullable=True, unique=True, index=True)
    )
    password_hash: str = Field(max_length=255)
    scopes: list[str] = Field(default_factory=lambda: list(DEFAULT_SCOPES), sa_column=Column(JSON, nullable=False))
    is_active: bool = True
    info: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    created_at: datetime = Field(default_factory=utcnow)
    last_login_at: datetime | None = None
    # Whether the account has a second factor, kept in step with the factor tables by
    # authsite/factors/enrolment.py in the same transaction as each change: the login and the
    # session lookup read it with the row they read anyway.
    mfa_enabled: bool = Field(default=False, sa_column=Column(Boolean, nullable=False, server_default=false()))
    # When the owner proved the address is theirs (a verify link, a reset link or sign-in code
    # mailed to it, or an operator's word); None while it is unconfirmed (authsite/email_ownership.py).
    email_confirmed_at: datetime | None = None


class Session(SQLModel, table=True):
    __tablename__ = "session"

    id: int | None = Field(default=None, primary_key=True)
    # Only the SHA-256 of the cookie token is stored: a leaked table opens no session.
    token_hash: str = Field(max_length=64, unique=True, index=True)
    user_id: int = Field(
        sa_column=Column(Integer, ForeignKey("user.id", ondelete="CASCADE"), nullable=False, index=True)
    )
    created_at: datetime = Field(default_factory=utcnow)
    last_seen_at: datetime = Field(default_factory=utcnow)
    expires_at: datetime = Field(index=True)
    ip: str | None = Field(default=None, max_length=45)
    user_agent: str | None = Field(default=None, max_length=512)
    remember: bool = False
    # When this session last proved who it is (its login, or a confirmation at /auth/confirm):
    # sudo mode is a property of the row, so it holds across workers and hosts.
    authenticated_at: datetime = Field(default_factory=utcnow)


class PasswordReset(SQLModel, table=True):
    __tablename__ = "password_reset"

    id: int | None = Field(default=None, primary_key=True)
    # As with sessions, only the SHA-256 of the mailed token is kept.
    token_hash: str = Field(max_length=64, unique=True, index=True)
    user_id: int = Field(
        sa_column=Column(Integer, ForeignKey("user.id", ondelete="CASCADE"), nullable=False, index=True)
    )
    created_at: datetime = Field(default_factory=utcnow)
    expires_at: datetime
    # The admin who made the link on the user's page (NULL: asked for by mail, or by the
    # `reset-link` command); the admin's standing is checked again when the link is used.
    # CASCADE: a link whose maker is gone dies with them rather than pass for a mailed one.
    issued_by: int | None = Field(
        default=None, sa_column=Column(Integer, ForeignKey("user.id", ondelete="CASCADE"), nullable=True)
    )


class AuthEvent(SQLModel, table=True):
    """One line of the audit log: what happened to whose account, from where."""

    __tablename__ = "auth_event"

    id: int | None = Field(default=None, primary_key=True)
    created_at: datetime = Field(default_factory=utcnow, index=True)
    kind: str = Field(max_length=32, index=True)
    # SET NULL: deleting a user keeps the history of what happened to the account.
    user_id: int | None = Field(
        default=None,
        sa_column=Column(Integer, ForeignKey("user.id", ondelete="SET NULL"), nullable=True, index=True),
    )
    # The name as typed, for failures that match no account (cut to 64
    # characters), and its normalised key so admins find it however it was spelt.
    username: str | None = Field(default=None, max_length=64)
    username_key: str | None = Field(default=None, sa_column=Column(_key_type(64), nullable=True, index=True))
    actor_id: int | None = Field(
        default=None, sa_column=Column(Integer, ForeignKey("user.id", ondelete="SET NULL"), nullable=True)
    )
    ip: str | None = Field(default=None, max_length=45)
    user_agent: str | None = Field(default=None, max_length=512)
    detail: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))


class ThrottleHit(SQLModel, table=True):
    """One counted request (a failed login, a sign-up, a reset request) in a rate-limit bucket."""

    __tablename__ = "throttle_hit"
    __table_args__ = (Index("ix_throttle_hit_bucket_created_at", "bucket", "created_at"),)

    id: int | None = Field(default=None, primary_key=True)
    # SHA-256 of the bucket's name ("login:<name>|<ip>"), so typed text is never stored here.
    bucket: str = Field(max_length=64)
    created_at: datetime = Field(default_factory=utcnow, index=True)
    # True while the attempt it reserves is still being checked (its password hashing); a
    # failure then becomes a plain hit, a success deletes it. Only settled hits are failures.
    pending: bool = Field(default=False, sa_column=Column(Boolean, nullable=False, server_default=false()))


def _user_id_column(*, unique: bool = False) -> Column:
    # CASCADE: whatever belongs to an account goes with it.
    return Column(Integer, ForeignKey("user.id", ondelete="CASCADE"), nullable=False, index=True, unique=unique)


class Authenticator(SQLModel, table=True):
    """A user's authenticator app (TOTP, RFC 6238): its secret, sealed, and the last step it accepted."""

    __tablename__ = "totp_authenticator"

    id: int | None = Field(default=None, primary_key=True)
    user_id: int = Field(sa_column=_user_id_column(unique=True))
    # AES-GCM under a key derived from the secret key, bound to the user (authsite/sealing.py).
    secret_sealed: str = Field(max_length=255)
    created_at: datetime = Field(default_factory=utcnow)
    last_used_at: datetime | None = None
    # The time step of the last code accepted: a code whose step is not later is refused, so a
    # code seen over a shoulder or in a log cannot be used again (RFC 6238, section 5.2).
    last_step: int = 0


class RecoveryCode(SQLModel, table=True):
    """One unused recovery code, as a keyed hash (authsite/factors/recovery_codes.py); used ones are deleted."""

    __tablename__ = "recovery_code"
    __table_args__ = (UniqueConstraint("user_id", "code_hash", name="uq_recovery_code_user_id_code_hash"),)

    id: int | None = Field(default=None, primary_key=True)
    user_id: int = Field(sa_column=_user_id_column())
    code_hash: str = Field(max_length=64)
    created_at: datetime = Field(default_factory=utcnow)


class PendingStep(SQLModel, table=True):
    """A step half-way through, such as a login waiting for its second factor: reached with a
    one-time token (only its SHA-256 is kept), it expires, and it ends after a few wrong answers."""

    __tablename__ = "pending_step"

    id: int | None = Field(default=None, primary_key=True)
    purpose: str = Field(max_length=32)
    token_hash: str = Field(max_length=64, unique=True, index=True)
    user_id: int = Field(sa_column=_user_id_column())
    created_at: datetime = Field(default_factory=utcnow)
    expires_at: datetime = Field(index=True)
    failures: int = 0
    data: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))


class Passkey(SQLModel, table=True):
    """A user's passkey (a WebAuthn credential): its public key, never a secret, and its counter."""

    __tablename__ = "passkey"

    id: int | None = Field(default=None, primary_key=True)
    user_id: int = Field(sa_column=_user_id_column())
    # base64url, as browsers send it; credential ids are at most 1023 bytes (WebAuthn, 5.1).
    credential_id: str = Field(sa_column=Column(_key_type(1400), nullable=False, unique=True, index=True))
    # The random id the authenticator keeps for the account (the same for all of a user's passkeys).
    user_handle: str = Field(max_length=128)
    public_key: bytes = Field(sa_column=Column(LargeBinary, nullable=False))
    sign_count: int = Field(default=0, sa_column=Column(BigInteger, nullable=False))
    name: str = Field(max_length=64)
    transports: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    aaguid: str = Field(default="", max_length=36)
    backed_up: bool = False
    created_at: datetime = Field(default_factory=utcnow)
    last_used_at: datetime | None = None
    # Set when the passkey answered with a counter that did not go up: it may have been copied.
    clone_suspected_at: datetime | None = None


class UsedChallenge(SQLModel, table=True):
    """A passkey challenge already presented (its SHA-256), kept until it would have expired anyway."""

    __tablename__ = "used_challenge"

    challenge_hash: str = Field(sa_column=Column(String(64), primary_key=True))
    expires_at: datetime = Field(index=True)


class SetupLink(SQLModel, table=True):
    """The one-time link that makes the first account while the site has none (authsite/first_admin.py)."""

    __tablename__ = "setup_link"

    # Always 1: a site has at most one such link, and the primary key is what makes processes
    # starting at once agree on it (the first insert wins, the others read it back).
    id: int = Field(sa_column=Column(Integer, primary_key=True, autoincrement=False))
    # The token is an HMAC of this under a key derived from the secret key, so every start can
    # print the same link again; the table alone (a backup, a leaked copy) opens nothing.
    nonce: str = Field(max_length=64)
    token_hash: str = Field(max_length=64)
    created_at: datetime = Field(default_factory=utcnow)
    expires_at: datetime
