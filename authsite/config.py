import ipaddress
import re
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

# Accepted spellings of a database URL, mapped to the async driver we run them on.
DRIVER_FOR_SCHEME = {
    "sqlite": "sqlite+aiosqlite",
    "sqlite+aiosqlite": "sqlite+aiosqlite",
    "postgres": "postgresql+asyncpg",
    "postgresql": "postgresql+asyncpg",
    "postgresql+asyncpg": "postgresql+asyncpg",
}


# Always allowed when AUTHSITE_ALLOWED_HOSTS is unset, beside the base URL's host.
LOOPBACK_HOSTS = ("localhost", "127.0.0.1", "::1")
HOST_NAME = re.compile(r"\[?[A-Za-z0-9.:-]{1,253}\]?")
SCOPE_NAME = re.compile(r"[a-z0-9][a-z0-9:._-]{0,63}")


def _items(value: str) -> list[str]:
    """The entries of a comma-separated setting, trimmed, empty ones dropped."""
    return [item for item in (part.strip() for part in value.split(",")) if item]


def _check_scope_names(value: str) -> None:
    for item in _items(value):
        if not SCOPE_NAME.fullmatch(item):
            raise ValueError(f"{item[:80]!r} is not a scope name (a-z, 0-9, ':', '.', '_', '-')")


class Settings(BaseSettings):
    """Everything an operator can set, read from AUTHSITE_* variables and `.env`."""

    # hide_input_in_errors: a validation error's text would otherwise quote the values it was
    # given, the secret key, the admin password and the passwords inside the URLs among them.
    model_config = SettingsConfigDict(
        env_prefix="AUTHSITE_", env_file=".env", env_ignore_empty=True, extra="ignore", frozen=True,
        hide_input_in_errors=True,
    )

    data_dir: Path = Path("data")
    # repr=False: the URLs may hold passwords, and a settings object ends up in reprs and logs.
    database_url: str | None = Field(None, repr=False)
    secret_key: SecretStr | None = None
    host: str = "127.0.0.1"
    port: int = Field(8000, ge=1, le=65535)
    base_url: str | None = None

    # Any whole second from 1 up (the contract): kiosks and expiry tests run short sessions, and
    # sessions.Lifetimes.touch_interval (idle/2 at most) keeps the writes in step with them.
    session_idle_seconds: int = Field(3600, ge=1)
    session_max_seconds: int = Field(43200, ge=1)
    remember_seconds: int = Field(2592000, ge=1)
    cookie_secure: Literal["auto", "true", "false"] = "auto"

    allow_signup: bool = True
    smtp_url: str | None = Field(None, repr=False)
    login_max_failures: int = Field(10, ge=1)
    login_window_seconds: int = Field(180, ge=1)
    login_ip_max_failures: int = Field(100, ge=1)
    signup_max_per_ip: int = Field(10, ge=1)
    signup_window_seconds: int = Field(3600, ge=1)
    reset_max_per_ip: int = Field(10, ge=1)
    reset_window_seconds: int = Field(3600, ge=1)

    audit_retention_days: int = Field(90, ge=1)
    log_level: Literal["debug", "info", "warning", "error", "critical"] = "info"
    # Proxies whose X-Forwarded-For/-Proto we believe ("127.0.0.1", "10.0.0.0/8,::1", "*").
    # Empty: nobody's, so a client can never claim another IP or https.
    forwarded_allow_ips: str = ""

    admin_username: str | None = None
    admin_password: SecretStr | None = None

    # Host names the site answers to (DNS rebinding); empty: the base URL's host and loopback.
    allowed_hosts: str = ""
    # Scopes (besides `authenticated`) a plain admin may grant or remove; the rest are super's.
    admin_grantable_scopes: str = ""

    # Shown in titles, the header, mail, and as the issuer of authenticator-app entries.
    site_name: str = Field("authsite", min_length=1, max_length=60)
    # How long after a login or a re-authentication a session may make sensitive changes.
    sudo_seconds: int = Field(900, ge=1)
    # Scopes whose holders must have a second factor before they can use anything else.
    mfa_required_scopes: str = ""
    # Whether addresses are proved by a mailed link: "none" (never asked), "optional" (shown as
    # unconfirmed until then), "mandatory" (an address at sign-up, and no login until it is proved).
    email_verification: Literal["none", "optional", "mandatory"] = "optional"
    # Offer "Email me a sign-in code" on the login page (and its JSON twin).
    login_by_code: bool = True

    def __init__(self, **values: Any):
        # The error still carries every input in .errors() and .json() (what error trackers
        # and API handlers show); it is raised again with the inputs blanked out.
        try:
            super().__init__(**values)
        except ValidationError as exc:
            blanked = [{**error, "input": "[hidden]"} for error in exc.errors(include_url=False)]
            raise ValidationError.from_exception_data(exc.title, blanked, hide_input=True) from None

    @field_validator("allowed_hosts")
    @classmethod
    def _host_list(cls, value: str) -> str:
        for item in _items(value):
            if item != "*" and not HOST_NAME.fullmatch(item):
                raise ValueError(f"{item[:80]!r} is not a host name (example.com, 127.0.0.1, ::1) or *")
        return value

    @field_validator("admin_grantable_scopes")
    @classmethod
    def _scope_list(cls, value: str) -> str:
        _check_scope_names(value)
        for item in _items(value):
            if item in ("admin", "super"):
                raise ValueError(f"{item!r} can only ever be granted by a super user")
        return value

    @field_validator("mfa_required_scopes")
    @classmethod
    def _required_scope_list(cls, value: str) -> str:
        _check_scope_names(value)
        return value

    @field_validator("site_name")
    @classmethod
    def _printable_name(cls, value: str) -> str:
        value = value.strip()
        if not value or not value.isprintable():
            raise ValueError("must be a short name of printable characters, e.g. Example Club")
        return value

    @field_validator("database_url")
    @classmethod
    def _known_database(cls, url: str | None) -> str | None:
        if url is None or url == "":
            return None
        scheme, sep, rest = url.partition("://")
        if not sep or scheme.lower() not in DRIVER_FOR_SCHEME:
            raise ValueError("must be a sqlite:// or postgresql:// URL")
        url = f"{DRIVER_FOR_SCHEME[scheme.lower()]}://{rest}"
        try:
            make_url(url)
        except (ValueError, ArgumentError):
            raise ValueError(
                "cannot be read as a URL: check the host and port, and %-encode special characters in the password"
            ) from None
        return url

    @field_validator("log_level", mode="before")
    @classmethod
    def _lower_level(cls, level: object) -> object:
        return level.lower() if isinstance(level, str) else level

    @field_validator("forwarded_allow_ips")
    @classmethod
    def _ip_list(cls, value: str) -> str:
        for item in filter(None, (part.strip() for part in value.split(","))):
            if item == "*":
                continue
            try:
                ipaddress.ip_network(item, strict=False)
            except ValueError:
                raise ValueError(f"{item!r} is not an IP address or network") from None
        return value

    @field_validator("smtp_url")
    @classmethod
    def _known_mail_scheme(cls, url: str | None) -> str | None:
        if url is None:
            return None
        parts = urlsplit(url)
        if parts.scheme not in ("smtp", "smtps") or not parts.hostname:
            raise ValueError("must look like smtp://user:pass@host:587 or smtps://user:pass@host:465")
        try:
            parts.port
        except ValueError:
            raise ValueError("has an invalid port") from None
        return url

    @field_validator("base_url")
    @classmethod
    def _absolute_base_url(cls, url: str | None) -> str | None:
        if url is None:
            return None
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.netloc or parts.query or parts.fragment:
            raise ValueError("must be an absolute http(s) URL such as https://example.com")
        return url.rstrip("/")

    @field_validator("secret_key")
    @classmethod
    def _strong_secret(cls, key: SecretStr | None) -> SecretStr | None:
        if key is not None and len(key.get_secret_value()) < 32:
            raise ValueError("must be at least 32 characters (or unset, to generate one)")
        return key

    @model_validator(mode="after")
    def _admin_pair(self) -> "Settings":
        if (self.admin_username is None) != (self.admin_password is None):
            raise ValueError(
                "AUTHSITE_ADMIN_USERNAME and AUTHSITE_ADMIN_PASSWORD must be set together"
            )
        if self.session_idle_seconds > self.session_max_seconds:
            raise ValueError(
                "AUTHSITE_SESSION_IDLE_SECONDS must not exceed AUTHSITE_SESSION_MAX_SECONDS"
            )
        return self

    @property
    def public_url(self) -> str:
        """Where links in mail point. Never taken from a request's Host header,
        which anyone can forge to send reset links to their own server."""
        if self.base_url:
            return self.base_url
        host = "localhost" if self.host in ("0.0.0.0", "::") else self.host
        return f"http://{host}:{self.port}"

    @property
    def allowed_host_names(self) -> frozenset[str]:
        """Lower-case host names (no port) a request's Host may carry; {"*"} allows any."""
        if hosts := _items(self.allowed_hosts):
            return frozenset(host.lower().strip("[]") for host in hosts)
        base = urlsplit(self.public_url).hostname or ""
        return frozenset({base.lower(), *LOOPBACK_HOSTS})

    @property
    def admin_grantable(self) -> frozenset[str]:
        return frozenset(_items(self.admin_grantable_scopes))

    @property
    def mfa_required(self) -> frozenset[str]:
        return frozenset(_items(self.mfa_required_scopes))

    @property
    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite+aiosqlite:///{self.data_dir.resolve() / 'authsite.db'}"
