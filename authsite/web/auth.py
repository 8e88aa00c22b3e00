"""HTML login and logout pages."""

from typing import Annotated
from urllib.parse import quote, urlsplit

from fastapi import APIRouter, Depends, Request
from starlette.responses import RedirectResponse, Response

from authsite import flash, guards
from authsite.csrf import CsrfFailed, is_cross_site
from authsite.events import Kind
from authsite.redirects import safe_next
from authsite.web.audit import audit
from authsite.web.email import hold_page
from authsite.web.user_auth import attempt_login, hold_for_second_step, log_out_user, set_session, too_many_attempts

FAILED_LOGIN_MESSAGE = "Wrong username or password."
TRUE_VALUES = {"on", "true", "1", "yes"}
LOGOUT_PATH = "/auth/logout"
CANCEL_FALLBACK = "/account"


def auth_router(site) -> APIRouter:
    router = APIRouter(prefix="/auth")
    Form = Annotated[dict[str, str], Depends(site.checked_form)]
    anonymous_only = [Depends(guards.already_logged_in)]

    @router.get("/login", dependencies=anonymous_only)
    async def login_page(request: Request, next: str = "") -> Response:
        return site.pages.render(request, "login.html", {"next": safe_next(next, site.login_redirect), "username": ""})

    @router.post("/login", dependencies=anonymous_only)
    async def login(request: Request, form: Form) -> Response:
        username, password = form.get("username", "").strip(), form.get("password", "")
        next_path = safe_next(form.get("next"), site.login_redirect)
        errors = {}
        if not username:
            errors["username"] = "Enter your username or email."
        if not password:
            errors["password"] = "Enter your password."
        remember = form.get("remember", "") in TRUE_VALUES
        if errors:
            return _login_form(request, username, next_path, errors, remember=remember, status_code=400)
        outcome = await attempt_login(site, request, username, password, via="form", remember=remember)
        if outcome.retry_after is not None:
            errors = {"form": too_many_attempts(outcome.retry_after)}
            page = _login_form(request, username, next_path, errors, remember=remember, status_code=429)
            page.headers["retry-after"] = str(outcome.retry_after)
            return page
        if outcome.unconfirmed is not None:
            # The right password, but the site logs nobody in before their address is proved.
            return hold_page(site, request, outcome.unconfirmed, state="waiting", status_code=403)
        if outcome.needs_second_factor:
            # No session yet: the browser holds only the pending login, for the code at /auth/mfa.
            response = RedirectResponse(second_step_url(next_path), status_code=303)
            hold_for_second_step(site, request, response, outcome.pending)
            return response
        if outcome.user is None:
            # One message for unknown user, wrong password and inactive account,
            # so the form never tells an attacker which accounts exist.
            return _login_form(request, username, next_path, {"form": FAILED_LOGIN_MESSAGE}, remember=remember,
                               status_code=401)
        response = RedirectResponse(next_path, status_code=303)
        set_session(site, request, response, outcome.token, user_id=outcome.user.id, remember=remember)
        return response

    @router.get("/logout")
    async def logout_page(request: Request, next: str = "") -> Response:
        return site.pages.render(request, "logout.html", {"cancel": _cancel_target(request, next)})

    @router.post("/logout")
    async def logout(request: Request) -> Response:
        # A forged cross-site POST arrives without the SameSite=Lax cookie and looks
        # anonymous: refuse it like every other state change, or its answer would
        # delete the victim's cookie.
        if is_cross_site(request):
            raise CsrfFailed()
        # Logging out someone already logged out (an expired session, say) changes
        # nothing, so only a live session needs the token (no "request refused" page).
        if request.user.is_authenticated:
            await site.checked_form(request)
        response = flash.redirect_with_flash(site.logout_redirect, "logged_out", conn=request, cookie_secure=site.settings.cookie_secure)
        if await log_out_user(site, request, response):
            await audit(site, request, Kind.LOGOUT, user_id=request.user.id)
        return response

    def _login_form(request, username, next_path, errors, *, remember, status_code):
        # The box stays as it was ticked: a typo in the password should not cost the choice.
        context = {"username": username[:200], "next": next_path, "errors": errors, "remember": remember}
        return site.pages.render(request, "login.html", context, status_code=status_code)

    return router


def _cancel_target(request: Request, next_path: str) -> str:
    """Where "Cancel" on the logout page goes: the page the user came from (`next`, else a Referer
    from this site), if it is a local path other than the logout page itself; else the account."""
    if not next_path:
        referer = urlsplit(request.headers.get("referer", ""))
        if referer.scheme in ("http", "https") and referer.netloc == request.url.netloc:
            next_path = referer.path + (f"?{referer.query}" if referer.query else "")
    target = safe_next(next_path, fallback=CANCEL_FALLBACK)
    return CANCEL_FALLBACK if urlsplit(target).path == LOGOUT_PATH else target


def second_step_url(next_path: str) -> str:
    return "/auth/mfa" if next_path == "/" else f"/auth/mfa?next={quote(next_path, safe='/')}"
