"""Login, server-side sessions and permissions for server-rendered FastAPI sites."""

from importlib import import_module

# The public API, loaded on first use (PEP 562): a process that needs one small module (the
# password-strength worker, a CLI command) does not pay for FastAPI and SQLAlchemy up front.
_PUBLIC = {
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

__all__ = sorted(_PUBLIC)


def __getattr__(name: str):
    if name in _PUBLIC:
        value = getattr(import_module(_PUBLIC[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'authsite' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *_PUBLIC})
