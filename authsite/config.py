import difflib
import importlib.util
import ipaddress
import os
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Literal, get_args
from urllib.parse import urlsplit

from dotenv import dotenv_values
from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_core import ErrorDetails, PydanticCustomError
from pydantic_settings import BaseSettings, SettingsConfigDict
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from authsite.redirects import safe_next

# Accepted spellings of a database URL, mapped to the async driver we run them on.
DRIVER_FOR_SCHEME = {
    "sqlite": "sqlite+aiosqlite",
    "sqlite+aiosqlite": "sqlite+aiosqlite",
    "postgres": "postgresql+asyncpg",
    "postgresql": "postgresql+asyncpg",
    "postgresql+asyncpg": "postgresql+asyncpg",
}


ENV_PREFIX = "AUTHSITE_"
# AUTHSITE_* names that are not settings and never refused as misspelled ones: the test suite's
# Postgres URL (tests/conftest.py; `.ci/run` exports it to every process of its Postgres pass) and
# the throwaway cluster's port and folder (.ci/postgres.sh). README.md lists them under Settings.
NOT_SETTINGS = frozenset({"AUTHSITE_TEST_DATABASE_URL", "AUTHSITE_PG_PORT", "AUTHSITE_PG_DIR"})
# Where an operator finds every setting; named when a misspelled name has no close match.
SETTINGS_TABLE = "the Settings section of README.md"
# Never shown in an error line: the value itself is the secret.
SECRET_FIELDS = frozenset({"secret_key", "admin_password"})
# Shown with the password part masked: a URL may carry one.
URL_FIELDS = frozenset({"database_url", "smtp_url"})
SHOWN_VALUE_CHARS = 80

# Always allowed when AUTHSITE_ALLOWED_HOSTS is unset, beside the base URL's host.
LOOPBACK_HOSTS = ("localhost", "127.0.0.1", "::1")
HOST_NAME = re.compile(r"\[?[A-Za-z0-9.:-]{1,253}\]?")
SCOPE_NAME = re.compile(r"[a-z0-9][a-z0-9:._-]{0,63}")


def _items(value: str) -> list[str]:
    """The entries of a comma-separated setting, trimmed, empty ones dropped."""
    return [item for item in (part.strip() for part in value.split(",")) if item]


def local_path(value: str) -> str:
    """`value` if it is a path on this site (the same rule as a `next` parameter), else ValueError."""
    if safe_next(value, fallback="") != value:
        raise ValueError(f"{value[:80]!r} is not a path on this site: it must start with one / (e.g. /dashboard)")
    return value


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
    # Serve the JSON API's description at /openapi.json (the standalone site; a host app owns its own).
    openapi: bool = True
    # Where a login without `next` (and a sign-up) lands, and where a logout does: a path on this
    # site. A host app without a page at "/" sets them (or passes AuthSite(login_redirect=...)).
    login_redirect: str = "/"
    logout_redirect: str = "/"

    def __init__(self, **values: Any):
        # A misspelled name would otherwise be ignored without a word (AUTHSITE_ALLOW_SINGUP=false
        # leaving sign-up open), in a host app as much as under run.py: both are refused.
        env_files = values.get("_env_file", type(self).model_config["env_file"])
        if unknown := unknown_setting_names(os.environ, _dotenv_names(env_files)):
            raise ValidationError.from_exception_data(
                type(self).__name__, [_unknown_name_error(unknown)], hide_input=True
            )
        # The error still carries every input in .errors() and .json() (what error trackers
        # and API handlers show); it is raised again with secrets blanked and URLs' passwords masked.
        try:
            super().__init__(**values)
        except ValidationError as exc:
            shown = [{**error, "input": _shown_input(error)} for error in exc.errors(include_url=False)]
            raise ValidationError.from_exception_data(exc.title, shown, hide_input=True) from None

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

    @field_validator("login_redirect", "logout_redirect")
    @classmethod
    def _local_path(cls, value: str) -> str:
        return local_path(value)

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
        # asyncpg ships with authsite, but an install without it (`pip install --no-deps`) would
        # otherwise meet a 40-line ModuleNotFoundError at its first connection.
        if url.startswith("postgresql+asyncpg:") and importlib.util.find_spec("asyncpg") is None:
            raise ValueError("PostgreSQL needs the asyncpg driver, which is not installed: pip install asyncpg")
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


def unknown_setting_names(environ: Iterable[str], dotenv_names: Iterable[str]) -> list[tuple[str, str]]:
    """(name, where) for each AUTHSITE_* name that is no setting: where is "" for the environment,
    " in .env" for the file. Names are matched as pydantic-settings reads them, whatever the case."""
    known = {ENV_PREFIX + field.upper() for field in Settings.model_fields} | NOT_SETTINGS
    # The environment wins over .env, as when the values are read: listed last, it names the source.
    unknown = [(name.upper(), " in .env") for name in dotenv_names]
    unknown += [(name.upper(), "") for name in environ]
    return [(name, where) for name, where in dict(unknown).items() if name.startswith(ENV_PREFIX) and name not in known]


def _dotenv_names(env_files: Any) -> list[str]:
    if env_files is None:
        return []
    files = [env_files] if isinstance(env_files, str | os.PathLike) else list(env_files)
    return [name for file in files if Path(file).is_file() for name in dotenv_values(file)]


def _unknown_name_error(unknown: list[tuple[str, str]]) -> dict:
    # Compared without the prefix they all share, which would make any two names look alike.
    settings = sorted(field.upper() for field in Settings.model_fields)
    lines = []
    for name, where in unknown:
        closest = difflib.get_close_matches(name.removeprefix(ENV_PREFIX), settings, n=1)
        hint = f"did you mean {ENV_PREFIX}{closest[0]}?" if closest else f"every setting is listed in {SETTINGS_TABLE}"
        lines.append(f"{name}{where} is not a setting; {hint}")
    return {"type": PydanticCustomError("unknown_setting", "{line}", {"line": "; ".join(lines)}), "loc": (), "input": None}


def _shown_input(error: ErrorDetails) -> object:
    field = str(error["loc"][0]) if error["loc"] else None
    if field is None or field in SECRET_FIELDS:
        return "[hidden]"  # a model-level error's input is every value given, secrets among them
    if field in URL_FIELDS and isinstance(error["input"], str):
        return _masked_url(error["input"])
    return error["input"]


def _masked_url(url: str) -> str:
    """`url` with the password of its user part, if any, replaced by ***."""
    scheme, sep, rest = url.partition("://")
    netloc, slash, path = rest.partition("/")
    user, at, host = netloc.rpartition("@")
    if not sep or not at or ":" not in user:
        return url
    return f"{scheme}://{user.partition(':')[0]}:***@{host}{slash}{path}"


def describe_settings_problem(error: ErrorDetails) -> str:
    """One of Settings' validation errors in plain words: the variable, the value given (never a
    secret, a URL's password masked) and what is accepted."""
    if error["type"] == "unknown_setting":
        return error["msg"]
    message = error["msg"].removeprefix("Value error, ")
    if not error["loc"]:
        return f"invalid settings: {message}"
    field = str(error["loc"][0])
    variable = ENV_PREFIX + field.upper()
    accepted = _what_is_accepted(field, error["type"]) or message
    given = error.get("input")
    if field in SECRET_FIELDS or given in (None, "[hidden]") or accepted.startswith("'"):
        return f"invalid setting {variable}: {accepted}"  # a list's message already quotes the wrong item
    text = str(given)
    shown = text if len(text) <= SHOWN_VALUE_CHARS else text[:SHOWN_VALUE_CHARS] + "..."
    return f"invalid setting {variable}: {shown!r} {accepted}"


def _what_is_accepted(field: str, error_type: str) -> str | None:
    """What pydantic's wording for a type or range error on `field` means, for an operator."""
    info = Settings.model_fields.get(field)
    if info is None:
        return None
    limits = {name: getattr(item, name) for item in info.metadata
              for name in ("ge", "le", "min_length", "max_length") if getattr(item, name, None) is not None}
    if field == "port":
        return f"is not a port number ({limits['ge']}-{limits['le']})"
    if info.annotation is int:
        if "le" in limits:
            return f"is not a whole number from {limits['ge']} to {limits['le']}"
        return f"is not a whole number of {limits.get('ge', 0)} or more"
    if info.annotation is bool:
        return "is not true or false"
    if error_type == "literal_error":
        return f"is not one of {', '.join(get_args(info.annotation))}"
    if error_type == "string_too_long":
        return f"is longer than {limits['max_length']} characters"
    if error_type == "string_too_short":
        return f"is shorter than {limits['min_length']} character(s)"
    return None
