"""Login, server-side sessions and permissions for server-rendered FastAPI sites."""

import importlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from authsite.app import AuthSite, create_app  # noqa: F401
    from authsite.config import Settings  # noqa: F401
    from authsite.guards import CurrentUser, admin_user, already_logged_in, logged_in, require, super_user  # noqa: F401

# Loaded on first use (PEP 562): a uvicorn worker imports authsite.logs and the CLI before it
# can answer its supervisor's first health check, and needs FastAPI only after that.
_EXPORTS = {
    "AuthSite": "authsite.app",
    "create_app": "authsite.app",
    "Settings": "authsite.config",
    "CurrentUser": "authsite.guards",
    "admin_user": "authsite.guards",
    "already_logged_in": "authsite.guards",
    "logged_in": "authsite.guards",
    "require": "authsite.guards",
    "super_user": "authsite.guards",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'authsite' has no attribute {name!r}")
    value = getattr(importlib.import_module(_EXPORTS[name]), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_EXPORTS})
