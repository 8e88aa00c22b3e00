"""Typed refusals, and the handlers that turn them into redirects, pages or JSON."""

from collections.abc import Callable, Sequence
from urllib.parse import quote

from fastapi import FastAPI, Request
from starlette.responses import JSONResponse, RedirectResponse, Response

from authsite import flash
from authsite.csrf import CsrfFailed
from authsite.passwords import HashingBusy

LOGIN_PATH = "/auth/login"
CONFIRM_PATH = "/auth/confirm"
SECURITY_PATH = "/account/security"
API_PREFIX = "/api/"


class NotLoggedIn(Exception):
    pass


class AlreadyLoggedIn(Exception):
    pass


class SecondFactorRequired(Exception):
    """The user holds a scope in AUTHSITE_MFA_REQUIRED_SCOPES and has no second factor yet."""


class ReauthenticationRequired(Exception):
    """A sensitive change outside the session's sudo window; `next_path` is where to come back to."""

    def __init__(self, next_path: str):
        super().__init__(next_path)
        self.next_path = next_path


class PermissionMissing(Exception):
    def __init__(self, scopes: Sequence[str]):
        super().__init__(", ".join(scopes))
        self.scopes = list(scopes)


Render = Callable[..., Response]


def is_api_request(request: Request) -> bool:
    """API callers get JSON answers and never a redirect."""
    if request.url.path.startswith(API_PREFIX):
        return True
    accept = request.headers.get("accept", "")
    return "application/json" in accept and "text/html" not in accept


def install_handlers(app: FastAPI, render: Render, *, cookie_secure: str = "auto", home: str = "/") -> None:
    async def not_logged_in(request: Request, exc: NotLoggedIn) -> Response:
        if is_api_request(request):
            return JSONResponse({"detail": "Not logged in."}, status_code=401)
        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        return RedirectResponse(f"{LOGIN_PATH}?next={quote(target, safe='')}", status_code=303)

    async def already_logged_in(request: Request, exc: AlreadyLoggedIn) -> Response:
        if is_api_request(request):
            return JSONResponse({"detail": "Already logged in."}, status_code=409)
        return RedirectResponse(home, status_code=303)

    async def permission_missing(request: Request, exc: PermissionMissing) -> Response:
        names = ", ".join(exc.scopes)
        if is_api_request(request):
            return JSONResponse({"detail": f"Missing permission: {names}."}, status_code=403)
        return render(request, "forbidden.html", {"missing": exc.scopes}, status_code=403)

    async def csrf_failed(request: Request, exc: CsrfFailed) -> Response:
        message = "This request did not come from a page of this site, or the form is out of date. Reload the page and try again."
        if is_api_request(request):
            return JSONResponse({"detail": message}, status_code=403)
        return render(request, "error.html", {"title": "Request refused", "message": message}, status_code=403)

    async def hashing_busy(request: Request, exc: HashingBusy) -> Response:
        # Not a failure of the visitor's: nothing was counted against them, they may retry.
        message = "Too many passwords are being checked right now. Try again in a few seconds."
        headers = {"retry-after": str(exc.retry_after)}
        if is_api_request(request):
            return JSONResponse({"detail": message}, status_code=503, headers=headers)
        page = render(request, "error.html", {"title": "Busy", "message": message}, status_code=503)
        page.headers.update(headers)
        return page

    async def second_factor_required(request: Request, exc: SecondFactorRequired) -> Response:
        if is_api_request(request):
            return JSONResponse({"detail": "second factor required"}, status_code=403)
        return flash.redirect_with_flash(SECURITY_PATH, "mfa_required", conn=request, cookie_secure=cookie_secure)

    async def reauthentication_required(request: Request, exc: ReauthenticationRequired) -> Response:
        # Nothing was changed; the browser comes back to `next_path` once the user has confirmed.
        if is_api_request(request):
            return JSONResponse({"detail": "reauthentication required"}, status_code=403)
        return RedirectResponse(f"{CONFIRM_PATH}?next={quote(exc.next_path, safe='/')}", status_code=303)

    app.add_exception_handler(SecondFactorRequired, second_factor_required)
    app.add_exception_handler(ReauthenticationRequired, reauthentication_required)
    app.add_exception_handler(NotLoggedIn, not_logged_in)
    app.add_exception_handler(HashingBusy, hashing_busy)
    app.add_exception_handler(AlreadyLoggedIn, already_logged_in)
    app.add_exception_handler(PermissionMissing, permission_missing)
    app.add_exception_handler(CsrfFailed, csrf_failed)
