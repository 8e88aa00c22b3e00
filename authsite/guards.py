"""FastAPI dependencies that decide who may see a route."""

from collections.abc import Callable
from typing import Annotated

from fastapi import Depends, Request

from authsite.errors import AlreadyLoggedIn, NotLoggedIn, PermissionMissing
from authsite.identity import AuthenticatedUser

ADMIN_SCOPES = ("admin", "super")


def logged_in(request: Request) -> AuthenticatedUser:
    if not request.user.is_authenticated:
        raise NotLoggedIn()
    return request.user


def already_logged_in(request: Request) -> None:
    """For pages only anonymous visitors need (login, sign-up): others go home."""
    if request.user.is_authenticated:
        raise AlreadyLoggedIn()


def require(*scopes: str) -> Callable[[Request], AuthenticatedUser]:
    """A guard that needs every one of `scopes`."""

    def has_scopes(request: Request) -> AuthenticatedUser:
        user = logged_in(request)
        missing = [scope for scope in scopes if scope not in request.auth.scopes]
        if missing:
            raise PermissionMissing(missing)
        return user

    has_scopes.__name__ = f"require_{'_'.join(scopes) or 'nothing'}"
    return has_scopes


def admin_user(request: Request) -> AuthenticatedUser:
    """Scope `admin` or `super`: a super user can do everything an admin can."""
    user = logged_in(request)
    if not any(scope in request.auth.scopes for scope in ADMIN_SCOPES):
        raise PermissionMissing(["admin"])
    return user


super_user = require("super")

CurrentUser = Annotated[AuthenticatedUser, Depends(logged_in)]
