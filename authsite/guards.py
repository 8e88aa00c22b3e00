"""FastAPI dependencies that decide who may see a route.

They are `async def` although they never await: FastAPI runs a plain `def` dependency in a
worker thread, and a thread hop on every guarded request costs more than the guard itself."""

from collections.abc import Awaitable, Callable
from typing import Annotated

from fastapi import Depends, Request

from authsite.errors import AlreadyLoggedIn, NotLoggedIn, PermissionMissing, SecondFactorRequired
from authsite.identity import AuthenticatedUser

ADMIN_SCOPES = ("admin", "super")


def _user_of(request: Request) -> AuthenticatedUser:
    if not request.user.is_authenticated:
        raise NotLoggedIn()
    # AUTHSITE_MFA_REQUIRED_SCOPES: a holder without a second factor may only go and add one.
    if request.user.needs_second_factor:
        raise SecondFactorRequired()
    return request.user


async def logged_in(request: Request) -> AuthenticatedUser:
    return _user_of(request)


async def signed_in(request: Request) -> AuthenticatedUser:
    """Logged in, even if a second factor is still to be added: for the pages where it is added
    (the security page, confirming who you are)."""
    if not request.user.is_authenticated:
        raise NotLoggedIn()
    return request.user


async def second_factor_policy(request: Request) -> None:
    """For pages anyone may see (the home page): a user who must add a second factor goes to do so."""
    if request.user.needs_second_factor:
        raise SecondFactorRequired()


async def already_logged_in(request: Request) -> None:
    """For pages only anonymous visitors need (login, sign-up): others go home."""
    if request.user.is_authenticated:
        raise AlreadyLoggedIn()


def require(*scopes: str) -> Callable[[Request], Awaitable[AuthenticatedUser]]:
    """A guard that needs every one of `scopes`."""

    async def has_scopes(request: Request) -> AuthenticatedUser:
        user = _user_of(request)
        missing = [scope for scope in scopes if scope not in request.auth.scopes]
        if missing:
            raise PermissionMissing(missing)
        return user

    has_scopes.__name__ = f"require_{'_'.join(scopes) or 'nothing'}"
    return has_scopes


async def admin_user(request: Request) -> AuthenticatedUser:
    """Scope `admin` or `super`: a super user can do everything an admin can."""
    user = _user_of(request)
    if not any(scope in request.auth.scopes for scope in ADMIN_SCOPES):
        raise PermissionMissing(["admin"])
    return user


super_user = require("super")

CurrentUser = Annotated[AuthenticatedUser, Depends(logged_in)]
