"""Sign-up: a new account, logged in at once (or, when the site requires a confirmed address, once
its mailed link has been opened)."""

from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Request
from starlette.responses import RedirectResponse, Response

from authsite import accounts, guards
from authsite.events import Kind
from authsite.web.audit import audit
from authsite.web.email import hold_page
from authsite.web.inputs import client_ip
from authsite.web.user_auth import log_in_user, too_many_attempts


def register_router(site) -> APIRouter:
    router = APIRouter(prefix="/auth", dependencies=[Depends(guards.already_logged_in)])
    Form = Annotated[dict[str, str], Depends(site.checked_form)]

    async def signup_is_open() -> None:
        if not site.settings.allow_signup:
            raise HTTPException(404, "Sign-up is closed on this site.")

    open_only = [Depends(signup_is_open)]

    @router.get("/register", dependencies=open_only)
    async def register_page(request: Request) -> Response:
        return site.pages.render(request, "register.html", {"values": {}})

    @router.post("/register", dependencies=open_only)
    async def register(request: Request, form: Form) -> Response:
        # Only these fields are read: `scopes` or anything else smuggled into
        # the form never reaches the account.
        values = {name: form.get(name, "") for name in ("username", "email", "password", "password_confirm")}
        attempt = await site.throttle.attempt(site.limits.signup(client_ip(request)))
        if attempt.is_throttled:
            shown = {"username": values["username"][:100], "email": values["email"][:300]}
            errors = {"form": too_many_attempts(attempt.retry_after)}
            page = site.pages.render(request, "register.html", {"values": shown, "errors": errors}, status_code=429)
            page.headers["retry-after"] = str(attempt.retry_after)
            return page
        mandatory = site.settings.email_verification == "mandatory"
        try:
            async with site.database.sessionmaker() as db:
                user = await accounts.create_user(
                    db=db, hasher=site.hasher, username=values["username"].strip(), password=values["password"],
                    password_confirm=values["password_confirm"], email=values["email"], email_required=mandatory,
                )
                await accounts.record_login(db=db, user=user)
        except accounts.AccountError as exc:
            # Every field's problem at once, so one more try can fix them all.
            shown = {"username": values["username"][:100], "email": values["email"][:300]}
            return site.pages.render(request, "register.html", {"values": shown, "errors": exc.errors},
                                     status_code=400)
        await audit(site, request, Kind.USER_CREATED, user_id=user.id, via="signup")
        await site.email_links.send_verification(user)
        if mandatory:
            # Not logged in: the address must be proved first (the link, then the login form).
            return hold_page(site, request, user)
        response = RedirectResponse(site.login_redirect, status_code=303)
        if not await log_in_user(site, request, response, user, remember=False):
            # Changed by someone else in the instant since it was made: the
            # account exists, so send them to log in.
            return RedirectResponse("/auth/login", status_code=303)
        return response

    return router

