"""The audit log: record what happened to an account (never failing the request), read it, prune it."""

import contextlib
import logging
from datetime import timedelta
from enum import StrEnum
from functools import partial

from sqlalchemy import Connection, delete, insert
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from authsite.db import Database, each_statement_committed
from authsite.lookalikes import BIDI_CONTROLS
from authsite.models import AuthEvent, User, utcnow
from authsite.rules import MAX_ROW_ID, username_key

log = logging.getLogger("authsite.audit")

USERNAME_MAX_CHARS = 64
USER_AGENT_MAX_CHARS = 512

_event = AuthEvent.__table__
_INSERT = insert(_event)  # built once; each event binds its own values


class Kind(StrEnum):
    LOGIN = "login"
    LOGIN_FAILED = "login_failed"
    LOGOUT = "logout"
    SESSION_REVOKED = "session_revoked"
    PASSWORD_CHANGED = "password_changed"
    EMAIL_CHANGED = "email_changed"
    EMAIL_CHANGE_REQUESTED = "email_change_requested"
    EMAIL_CHANGE_CANCELLED = "email_change_cancelled"
    EMAIL_CONFIRMED = "email_confirmed"
    SIGN_IN_CODE_SENT = "sign_in_code_sent"
    RESET_REQUESTED = "reset_requested"
    RESET_USED = "reset_used"
    USER_CREATED = "user_created"
    FIRST_ADMIN_CREATED = "first_admin_created"
    SCOPES_CHANGED = "scopes_changed"
    ACTIVATED = "activated"
    DEACTIVATED = "deactivated"
    SECOND_STEP = "second_step"
    REAUTHENTICATED = "reauthenticated"
    MFA_ENABLED = "mfa_enabled"
    MFA_DISABLED = "mfa_disabled"
    MFA_RESET = "mfa_reset"
    RECOVERY_CODES_REPLACED = "recovery_codes_replaced"
    RECOVERY_CODE_USED = "recovery_code_used"
    PASSKEY_ADDED = "passkey_added"
    PASSKEY_REMOVED = "passkey_removed"
    PASSKEY_CLONE_SUSPECTED = "passkey_clone_suspected"


LABELS = {
    Kind.LOGIN: "Logged in",
    Kind.LOGIN_FAILED: "Failed login",
    Kind.LOGOUT: "Logged out",
    Kind.SESSION_REVOKED: "Session ended",
    Kind.PASSWORD_CHANGED: "Password changed",
    Kind.EMAIL_CHANGED: "Email changed",
    Kind.EMAIL_CHANGE_REQUESTED: "Email change asked for (waiting for its link)",
    Kind.EMAIL_CHANGE_CANCELLED: "Email change cancelled from the old address",
    Kind.EMAIL_CONFIRMED: "Email address confirmed",
    Kind.SIGN_IN_CODE_SENT: "Sign-in code asked for",
    Kind.RESET_REQUESTED: "Password reset requested",
    Kind.RESET_USED: "Password reset",
    Kind.USER_CREATED: "Account created",
    Kind.FIRST_ADMIN_CREATED: "First account created from the setup link printed at start (every permission)",
    Kind.SCOPES_CHANGED: "Permissions changed",
    Kind.ACTIVATED: "Account activated",
    Kind.DEACTIVATED: "Account deactivated",
    Kind.SECOND_STEP: "Password accepted, second factor asked",
    Kind.REAUTHENTICATED: "Identity confirmed for a sensitive change",
    Kind.MFA_ENABLED: "Authenticator app turned on",
    Kind.MFA_DISABLED: "Authenticator app turned off",
    Kind.MFA_RESET: "Second factors removed by an administrator",
    Kind.RECOVERY_CODES_REPLACED: "New recovery codes made",
    Kind.RECOVERY_CODE_USED: "Recovery code used",
    Kind.PASSKEY_ADDED: "Passkey added",
    Kind.PASSKEY_REMOVED: "Passkey removed",
    Kind.PASSKEY_CLONE_SUSPECTED: "Passkey refused: it may have been copied",
}
REASONS = {"unknown_user": "unknown user", "bad_password": "wrong password", "inactive": "account inactive",
           "throttled": "too many attempts", "password_changed": "password changed meanwhile",
           "wrong_current_password": "wrong current password", "wrong_code": "wrong code",
           "login_expired": "login expired", "passkey_refused": "passkey not accepted",
           "passkey_unknown": "unknown passkey", "passkey_expired": "passkey challenge expired",
           "passkey_replayed": "passkey answer replayed", "passkey_cloned": "passkey counter went back",
           "email_unconfirmed": "email address not confirmed yet"}


def describe(event: AuthEvent) -> str:
    """A line a person can read: "Failed login (wrong password)"."""
    label = LABELS.get(event.kind, event.kind)
    if reason := event.detail.get("reason"):
        return f"{label} ({REASONS.get(reason, reason)})"
    return label


def prepare(
    kind: Kind,
    *,
    user_id: int | None = None,
    username: str | None = None,
    actor_id: int | None = None,
    ip: str | None = None,
    user_agent: str | None = None,
    **detail,
) -> dict:
    """The event's row, made safe to store, and its structured log line written now."""
    typed = _storable(username[:USERNAME_MAX_CHARS]) if username else None
    row = {
        "kind": str(kind),
        "user_id": user_id,
        "username": typed,
        "username_key": username_key(typed)[:USERNAME_MAX_CHARS] if typed else None,
        "actor_id": actor_id,
        "ip": ip,
        "user_agent": _storable(user_agent[:USER_AGENT_MAX_CHARS]) if user_agent else None,
        "detail": {k: _storable(v) if isinstance(v, str) else v for k, v in detail.items()},
        "created_at": utcnow(),
    }
    log.info(str(kind), extra={"fields": _fields(row)})
    return row


def store(conn: Connection, event: dict) -> None:
    """Insert and commit one prepared event on `conn`, after whatever the caller committed.
    Never raises: the audit log must not turn a successful login (or a refused one) into a 500."""
    try:
        with each_statement_committed(conn):  # one round trip on Postgres, not three
            conn.execute(_INSERT, event)
        conn.commit()  # when the caller left a transaction open
    except Exception as exc:
        with contextlib.suppress(Exception):
            conn.rollback()
        _write_failed(event, exc)


class AuditLog:
    def __init__(self, database: Database):
        self.database = database

    async def record(self, kind: Kind, **fields) -> None:
        """Log one structured line and store the event (see `prepare`). Never raises."""
        event = prepare(kind, **fields)
        try:
            await self.database.run(partial(store, event=event))
        except Exception as exc:  # the database could not even be reached
            _write_failed(event, exc)


def _write_failed(event: dict, exc: Exception) -> None:
    log.error("audit_write_failed", extra={"fields": {"event": event["kind"], "reason": type(exc).__name__}})


async def recent_events_for_user(*, db: AsyncSession, user_id: int, limit: int = 10) -> list[AuthEvent]:
    statement = (
        select(AuthEvent).where(AuthEvent.user_id == user_id).order_by(col(AuthEvent.id).desc()).limit(limit)
    )
    return list((await db.exec(statement)).all())


async def list_events(
    *, db: AsyncSession, kind: str | None = None, username: str | None = None,
    before_id: int | None = None, limit: int = 50,
) -> list[AuthEvent]:
    """Newest first; `before_id` pages back (keyset, so deep pages cost the same)."""
    statement = select(AuthEvent).order_by(col(AuthEvent.id).desc()).limit(limit)
    if kind:
        statement = statement.where(AuthEvent.kind == kind)
    if username:
        key = username_key(_storable(username[:USERNAME_MAX_CHARS]))[:USERNAME_MAX_CHARS]
        user_ids = select(User.id).where(User.username_key == key)
        statement = statement.where(col(AuthEvent.user_id).in_(user_ids) | (AuthEvent.username_key == key))
    if before_id is not None and before_id <= MAX_ROW_ID:  # beyond: every id is older
        if before_id < 1:
            return []
        statement = statement.where(col(AuthEvent.id) < before_id)
    return list((await db.exec(statement)).all())


async def prune_events(*, db: AsyncSession, older_than: timedelta) -> int:
    result = await db.exec(delete(AuthEvent).where(col(AuthEvent.created_at) < utcnow() - older_than))
    await db.commit()
    return result.rowcount or 0


def _storable(text: str) -> str:
    """Attackers type anything; NUL and lone surrogates cannot be stored, so escape them, and bidi
    controls would make the admin's audit page read backwards, so they are written out (\\u202e)."""
    text = text.encode("utf-8", "backslashreplace").decode("utf-8").replace("\x00", "\\x00")
    return text.translate(_SHOWN_BIDI) if not BIDI_CONTROLS.isdisjoint(text) else text


_SHOWN_BIDI = {ord(char): f"\\u{ord(char):04x}" for char in BIDI_CONTROLS}


def _fields(event: dict) -> dict:
    # Only what the event row holds: never a password, token or hash.
    fields = {
        "event": event["kind"],
        "user_id": event["user_id"],
        "username": event["username"],
        "actor_id": event["actor_id"],
        "ip": event["ip"],
        **event["detail"],
    }
    return {k: v for k, v in fields.items() if v is not None}
