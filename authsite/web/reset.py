"""Forgotten passwords: ask for a link by mail, then set a new password from it."""

from functools import partial
from typing import Annotated

from fastapi import APIRouter, Depends, Request
from starlette.responses import Response

from authsite import accounts, email_ownership, flash, resets
from authsite.events import Kind
from authsite.headers import no_referrer_path
from authsite.factors.second_factors import remove_all_factors
from authsite.mail import Mail
from authsite.models import utcnow
from authsite.notices import Notice
from authsite.web.audit import audit, notify
from authsite.web.inputs import client_ip
from authsite.web.user_auth import too_many_attempts

INVALID_LINK = "This reset link is invalid, already used or expired. Ask for a new one."
RESET_MAIL = """Hello {username},

someone (we hope you) asked to reset the password of your account on {site}.
Set a new password here within the next hour:

{link}

If you did not ask for this, ignore this mail: your password stays as it is.
"""


def reset_router(site) -> APIRouter:
    router = APIRouter(prefix="/auth/reset")
    Form = Annotated[dict[str, str], Depends(site.checked_form)]

    @router.get("")
    async def request_page(request: Request) -> Response:
        return site.pages.render(request, "reset_request.html", {"login": ""})

    @router.post("")
    async def request_link(request: Request, form: Form) -> Response:
        login = form.get("login", "").strip()
        if not login:
            errors = {"login": "Enter your username or email address."}
            return site.pages.render(request, "reset_request.html", {"login": "", "errors": errors}, status_code=400)
        attempt = await site.throttle.attempt(site.limits.reset(login, client_ip(request)))
        if attempt.is_throttled:
            errors = {"login": too_many_attempts(attempt.retry_after)}
            page = site.pages.render(request, "reset_request.html", {"login": login[:254], "errors": errors},
                                     status_code=429)
            page.headers["retry-after"] = str(attempt.retry_after)
            return page
        # The same page whether or not the account exists, so the form cannot be used to find
        # out who has an account here; and the same time: everything that depends on the
        # account (its lookup, its mail limit, its link, the audit row, the mail) happens after
        # the answer, in the mailer's queue, for a known and an unknown login alike.
        who = {"ip": client_ip(request), "user_agent": request.headers.get("user-agent")}
        await site.mailer.compose_later(partial(_link_mail_if_account_exists, login, who))
        return site.pages.render(request, "reset_sent.html")

    @router.get("/{token}")
    async def reset_page(request: Request, token: str) -> Response:
        async with site.database.sessionmaker() as db:
            user = await resets.get_user_by_reset_token(db=db, token=token)
        if user is None:
            return _invalid_link(request)
        return no_referrer_path(site.pages.render(request, "reset_form.html", {"token": token, "account": user}))

    @router.post("/{token}")
    async def reset(request: Request, token: str, form: Form) -> Response:
        async with site.database.sessionmaker() as db:
            owner = await resets.get_user_by_reset_token(db=db, token=token)
        if owner is None:
            return _invalid_link(request)
        # Each try costs a strength judgement: a link (an account) gets a handful of them.
        tries = await site.throttle.attempt(site.limits.new_password_tries(owner.id))
        if tries.is_throttled:
            errors = {"password": too_many_attempts(tries.retry_after)}
            context = {"token": token, "account": owner, "errors": errors}
            page = site.pages.render(request, "reset_form.html", context, status_code=429)
            page.headers["retry-after"] = str(tries.retry_after)
            return no_referrer_path(page)
        password, confirm = form.get("password", ""), form.get("password_confirm", "")
        try:
            async with site.database.sessionmaker() as db:
                user = await resets.reset_password(db=db, hasher=site.hasher, token=token, password=password,
                                                   password_confirm=confirm)
        except accounts.AccountError as exc:
            context = {"token": token, "account": owner, "errors": exc.errors}
            return no_referrer_path(site.pages.render(request, "reset_form.html", context, status_code=400))
        if user is None:
            return _invalid_link(request)
        await audit(site, request, Kind.RESET_USED, user_id=user.id)
        notify(site, request, Notice.PASSWORD_RESET, user=user)
        await _address_proved(request, user)
        return flash.redirect_with_flash(
            "/auth/login", "password_reset", conn=request, cookie_secure=site.settings.cookie_secure
        )

    async def _link_mail_if_account_exists(login: str, who: dict) -> Mail | None:
        record = partial(site.audit.record, Kind.RESET_REQUESTED, **who)
        async with site.database.sessionmaker() as db:
            user = await accounts.get_user_by_login(db, login)
            if user is None or not user.is_active or not user.email:
                await record(user_id=user and user.id, username=login, sent=False)
                return None
            if (await site.throttle.attempt(site.limits.reset_mail(user.id))).is_throttled:
                await record(user_id=user.id, sent=False, reason="throttled")
                return None
            token = await resets.create_reset_token(db=db, user=user)
        await record(user_id=user.id, sent=True)
        link = f"{site.settings.public_url}/auth/reset/{token}"
        body = RESET_MAIL.format(username=user.username, site=site.name, link=link)
        return Mail(to=user.email, subject=f"Reset your {site.name} password", body=body)

    async def _address_proved(request: Request, user) -> None:
        """The link came by mail to the account's address: it is confirmed now. If it was not before,
        whoever signed up with it may not have been its owner (pre-hijacking): the second factors
        set up before go too, so theirs cannot lock the owner out (sessions ended with the reset)."""

        def prove(conn):
            newly = email_ownership.proved_by_mail(conn, user_id=user.id, now=utcnow())
            had = newly and remove_all_factors(conn, user_id=user.id)
            conn.commit()
            return had

        if await site.database.run(prove):
            await audit(site, request, Kind.MFA_RESET, user_id=user.id, reason="unconfirmed_address_reset")

    def _invalid_link(request: Request) -> Response:
        context = {"title": "Reset link not valid", "message": INVALID_LINK, "link": ("/auth/reset", "Ask for a new link")}
        return no_referrer_path(site.pages.render(request, "error.html", context, status_code=400))

    return router

