"""Email ownership in the pages: the links that confirm an address or move the account to a new one,
"this was not me", asking for a link again, and the page that holds an unconfirmed user when
AUTHSITE_EMAIL_VERIFICATION=mandatory. The rules are authsite/email_ownership.py's."""

from functools import cached_property, partial
from typing import Annotated

from fastapi import APIRouter, Depends, Request
from starlette.responses import RedirectResponse, Response

from authsite import email_ownership, flash, guards
from authsite.email_ownership import CHANGE, mask
from authsite.events import Kind
from authsite.headers import no_referrer_path
from authsite.mail import Mail
from authsite.models import User, utcnow
from authsite.notices import Notice
from authsite.sealing import Box, derive_key
from authsite.web.audit import audit, notify
from authsite.web.inputs import client_ip
from authsite.web.user_auth import too_many_attempts

INVALID_LINK = ("This confirmation link does not work: it was used already, it is more than 24 hours old, "
                "or the account's address changed since. Ask for a new one from your account page.")
TAKEN = "That address belongs to another account now, so the change was not made."
HOLD_SECONDS = 60 * 60

VERIFY_MAIL = """Hello {username},

Please confirm that {email} is your address on {site} by opening this link:

{link}

It works once, within 24 hours. Opening it only confirms the address; it does not log anyone in.
If you did not ask for this, ignore this mail.

-- 
{site}
"""
CHANGE_MAIL = """Hello {username},

To make {email} the email address of your {site} account, open this link:

{link}

It works once, within 24 hours. Until it is opened, your account's mail still goes to its
current address. If you did not ask for this, ignore this mail: nothing will change.

-- 
{site}
"""


class EmailLinks:
    """Mints and mails the links (and seals the "send again" form of a user held at login)."""

    def __init__(self, site, secret_key: str):
        self.site = site
        self._secret_key = secret_key

    @cached_property
    def _holds(self) -> Box:
        # On first use, like the second factors' keys: a worker that never holds anyone loads no cryptography.
        return Box(derive_key(self._secret_key, "email hold"))

    async def send_verification(self, user: User) -> None:
        """Mail a link proving the account's current address (nothing without one)."""
        if not user.email or self.site.settings.email_verification == "none":
            return
        token = await self.site.database.run(self._in_transaction(
            email_ownership.start_verification, user_id=user.id, email=user.email,
        ))
        body = VERIFY_MAIL.format(username=user.username, email=user.email, site=self.site.name,
                                  link=f"{self.site.settings.public_url}/auth/verify/{token}")
        self.site.mailer.send_later(Mail(to=user.email, subject=f"Confirm your email address on {self.site.name}",
                                         body=body))

    async def request_change(self, request: Request, user: User, new_email: str) -> None:
        """The new address gets its link; the old one, a notice with the link that cancels."""
        change, cancel = await self.site.database.run(self._in_transaction(
            email_ownership.request_change, user_id=user.id, new_email=new_email, old_email=user.email,
            old_confirmed=user.email_confirmed_at is not None,
        ))
        base = self.site.settings.public_url
        body = CHANGE_MAIL.format(username=user.username, email=new_email, site=self.site.name,
                                  link=f"{base}/auth/verify/{change}")
        self.site.mailer.send_later(Mail(to=new_email, subject=f"Confirm your new email address on {self.site.name}",
                                         body=body))
        if user.email:
            cancel_line = (f"cancel the change at once at {base}/auth/email-change/cancel/{cancel}" if cancel else
                           f"reset your password at once at {base}/auth/reset")
            notify(self.site, request, Notice.EMAIL_CHANGE_REQUESTED, user=user, new_email=new_email,
                   cancel=cancel_line)

    async def removed(self, request: Request, user: User, old_email: str, *, old_confirmed: bool) -> None:
        """The address was removed at once: the old one is told, with a link that puts it back."""
        cancel = await self.site.database.run(self._in_transaction(
            email_ownership.after_removal, user_id=user.id, old_email=old_email, old_confirmed=old_confirmed,
        ))
        base = self.site.settings.public_url
        cancel_line = (f"put it back at once at {base}/auth/email-change/cancel/{cancel}" if cancel else
                       f"reset your password at once at {base}/auth/reset")
        notify(self.site, request, Notice.EMAIL_REMOVED, user=user, to=old_email, cancel=cancel_line)

    def hold(self, user: User) -> str:
        """A sealed stand-in for the account on the "check your mail" page, good for an hour: it
        lets that page ask for the link again, and was only given to someone who knew the password."""
        return self._holds.seal_for({"user": user.id}, context="email hold", lifetime=HOLD_SECONDS)

    def held_user_id(self, sealed: str | None) -> int | None:
        data = self._holds.open_for(sealed, context="email hold")
        return data["user"] if data else None

    @staticmethod
    def _in_transaction(work, **arguments):
        def run(conn):
            result = work(conn, now=utcnow(), **arguments)
            conn.commit()
            return result

        return run


def hold_page(site, request: Request, user: User, *, state: str = "sent", status_code: int = 200) -> Response:
    """Where an unconfirmed user waits (mandatory verification): where the link went, and "send
    again". `state`: "sent" (a link just went out), "waiting" (at login) or "throttled"."""
    context = {"masked": mask(user.email or ""), "hold": site.email_links.hold(user), "state": state}
    return site.pages.render(request, "verify_hold.html", context, status_code=status_code)


def email_router(site) -> APIRouter:
    router = APIRouter()
    Form = Annotated[dict[str, str], Depends(site.checked_form)]

    # Before the link's own routes: "resend" is not a token.
    @router.post("/auth/verify/resend", dependencies=[Depends(guards.already_logged_in)])
    async def send_again_when_held(request: Request, form: Form) -> Response:
        user_id = site.email_links.held_user_id(form.get("hold"))
        async with site.database.sessionmaker() as db:
            user = await db.get(User, user_id) if user_id is not None else None
        if user is None or not user.is_active or not user.email:
            return RedirectResponse("/auth/login", status_code=303)
        if user.email_confirmed_at is not None:
            return flash.redirect_with_flash("/auth/login", "email_confirmed", conn=request,
                                             cookie_secure=site.settings.cookie_secure)
        if retry := await _throttled(request, user):
            page = hold_page(site, request, user, state="throttled", status_code=429)
            page.headers["retry-after"] = str(retry)
            return page
        await site.email_links.send_verification(user)
        return hold_page(site, request, user)

    @router.get("/auth/verify/{token}")
    async def link_page(request: Request, token: str) -> Response:
        # Only a page with a button: mail systems open the links in incoming mail (to scan them),
        # and such a visit must not prove anything (it would disarm the pre-hijacking defence).
        step = await site.database.run(partial(email_ownership.find_link, token=token, now=utcnow()))
        if step is None:
            return _error(request, "Confirmation link not valid", INVALID_LINK)
        context = {"token": token, "email": step.data.get("email", ""), "change": step.purpose == CHANGE}
        return no_referrer_path(site.pages.render(request, "verify_link.html", context))

    @router.post("/auth/verify/{token}")
    async def open_link(request: Request, token: str, form: Form) -> Response:
        opened = await site.database.run(partial(email_ownership.open_link, token=token, now=utcnow()))
        if opened is None:
            return _error(request, "Confirmation link not valid", INVALID_LINK)
        if opened.refused:
            return _error(request, "Address not changed", TAKEN)
        if opened.kind == CHANGE:
            await audit(site, request, Kind.EMAIL_CHANGED, user_id=opened.user_id)
            notice = "email_changed"
        else:
            await audit(site, request, Kind.EMAIL_CONFIRMED, user_id=opened.user_id)
            notice = "email_confirmed"
        # Never a login: whoever opened the link has proved a mailbox, not a password.
        where = "/account" if getattr(request.user, "id", None) == opened.user_id else "/auth/login"
        response = flash.redirect_with_flash(where, notice, conn=request, cookie_secure=site.settings.cookie_secure)
        return no_referrer_path(response)

    @router.get("/auth/email-change/cancel/{token}")
    async def cancel_page(request: Request, token: str) -> Response:
        step = await site.database.run(partial(email_ownership.find_cancel, token=token, now=utcnow()))
        if step is None:
            return _error(request, "Link not valid", "This link does not work any more: it was used already or "
                                                      "is more than a week old.")
        context = {"token": token, "new_email": step.data.get("new", "")}
        return no_referrer_path(site.pages.render(request, "email_change_cancel.html", context))

    @router.post("/auth/email-change/cancel/{token}")
    async def cancel(request: Request, token: str, form: Form) -> Response:
        step = await site.database.run(partial(email_ownership.cancel_change, token=token, now=utcnow()))
        if step is None:
            return _error(request, "Link not valid", "This link does not work any more: it was used already or "
                                                      "is more than a week old.")
        await audit(site, request, Kind.EMAIL_CHANGE_CANCELLED, user_id=step.user_id)
        return flash.redirect_with_flash("/auth/reset", "email_change_cancelled", conn=request,
                                         cookie_secure=site.settings.cookie_secure)

    @router.post("/account/email/verify", dependencies=[Depends(guards.logged_in)])
    async def send_again(request: Request, form: Form) -> Response:
        async with site.database.sessionmaker() as db:
            user = await db.get(User, request.user.id)
        if user is None or not user.email or user.email_confirmed_at is not None:
            return RedirectResponse("/account", status_code=303)
        if retry := await _throttled(request, user):
            return _error(request, "Too many links", too_many_attempts(retry), status_code=429,
                          retry_after=retry)
        await site.email_links.send_verification(user)
        return flash.redirect_with_flash("/account", "verify_sent", conn=request,
                                         cookie_secure=site.settings.cookie_secure)

    async def _throttled(request: Request, user: User) -> int | None:
        attempt = await site.throttle.attempt(site.limits.verify_mail(user.id, client_ip(request)))
        return attempt.retry_after if attempt.is_throttled else None

    def _error(request: Request, title: str, message: str, *, status_code: int = 400,
               retry_after: int | None = None) -> Response:
        context = {"title": title, "message": message, "link": ("/account", "Your account")}
        page = no_referrer_path(site.pages.render(request, "error.html", context, status_code=status_code))
        if retry_after is not None:
            page.headers["retry-after"] = str(retry_after)
        return page

    return router
