"""Confirming who you are before a sensitive change (sudo mode): password, and code if you have one."""

from functools import partial
from typing import Annotated

from fastapi import APIRouter, Depends, Request
from starlette.responses import RedirectResponse, Response

from authsite import accounts, guards
from authsite.errors import NotLoggedIn
from authsite.events import Kind
from authsite.factors.passkeys import PasskeyAnswer, count_passkeys
from authsite.factors.second_factors import RECOVERY_CODE, has_totp
from authsite.middleware import SESSION_SCOPE_KEY
from authsite.notices import Notice, codes_left_sentence
from authsite.reauthentication import IdentityCheck, Reauthenticated, confirm_identity
from authsite.redirects import safe_next
from authsite.web.audit import audit, notify
from authsite.web.inputs import client_ip

from authsite.web.user_auth import answer_from, forget_challenge, renew_session_cookie, too_many_attempts, warn_of_clone

DEFAULT_NEXT = "/account"


def confirm_router(site) -> APIRouter:
    # signed_in, not logged_in: a user whom AUTHSITE_MFA_REQUIRED_SCOPES holds at the security
    # page may need to confirm who they are to set a second factor up.
    router = APIRouter(prefix="/auth", dependencies=[Depends(guards.signed_in)])
    Form = Annotated[dict[str, str], Depends(site.checked_form)]

    @router.get("/confirm")
    async def confirm_page(request: Request, next: str = DEFAULT_NEXT) -> Response:
        return await _form(request, safe_next(next, DEFAULT_NEXT))

    @router.post("/confirm")
    async def confirm(request: Request, form: Form) -> Response:
        next_path = safe_next(form.get("next"), DEFAULT_NEXT)
        credential = form.get("credential", "")
        passkey = answer_from(site, request, credential) if credential and site.passkeys.available else None
        outcome = await reauthenticate(site, request, password=form.get("password", ""), code=form.get("code", ""),
                                       via="confirm", passkey=passkey)
        if outcome.retry_after is not None:
            page = await _form(request, next_path, errors={"form": too_many_attempts(outcome.retry_after)}, status_code=429)
            page.headers["retry-after"] = str(outcome.retry_after)
            return page
        if not outcome.confirmed:
            return await _form(request, next_path, errors=outcome.errors, status_code=401)
        response = RedirectResponse(next_path, status_code=303)
        renew_session_cookie(site, request, response, outcome.token)
        if passkey:
            forget_challenge(site, request, response)
        return response

    async def _form(request: Request, next_path: str, *, errors=None, status_code: int = 200) -> Response:
        has_passkeys = site.passkeys.available and await site.database.run(
            partial(count_passkeys, user_id=request.user.id)) > 0
        context = {"next": next_path, "errors": errors or {}, "has_passkeys": has_passkeys,
                   "needs_code": request.user.has_second_factor,
                   "has_totp": await site.database.run(partial(has_totp, user_id=request.user.id))}
        return site.pages.render(request, "confirm.html", context, status_code=status_code)

    return router


async def reauthenticate(site, request: Request, *, password: str, code: str, via: str,
                         passkey: PasskeyAnswer | None = None) -> Reauthenticated:
    """Both doors' confirmation: checked, the sudo window restarted, audited, notices mailed."""
    async with site.database.sessionmaker() as db:
        user = await accounts.get_user_by_id(db, request.user.id)
    if user is None:
        raise NotLoggedIn()
    outcome = await confirm_identity(database=site.database, logins=site.logins, second_step=site.second_step,
                                     check=IdentityCheck(
                                         user=user, session_id=request.scope[SESSION_SCOPE_KEY].id, password=password,
                                         code=code, ip=client_ip(request), user_agent=request.headers.get("user-agent"),
                                         via=via, passkey=passkey,
                                     ))
    if outcome.clone_suspected:
        await warn_of_clone(site, request, user=user)
    if outcome.confirmed:
        await audit(site, request, Kind.REAUTHENTICATED, user_id=user.id, **({"factor": outcome.method} if outcome.method else {}))
        if outcome.method == RECOVERY_CODE:
            notify(site, request, Notice.RECOVERY_CODE_USED, codes_left=codes_left_sentence(outcome.codes_left or 0))
    return outcome
