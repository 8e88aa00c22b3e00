"""The security page: turning an authenticator app on and off, adding and removing passkeys, recovery codes."""

from functools import partial
from typing import Annotated
from urllib.parse import quote

from fastapi import APIRouter, Depends, Request
from starlette.responses import Response

from authsite import flash, guards
from authsite.events import Kind
from authsite.factors import recovery_codes
from authsite.factors.second_factors import FactorError
from authsite.middleware import SESSION_SCOPE_KEY
from authsite.models import utcnow
from authsite.notices import Notice
from authsite.web.audit import audit, notify
from authsite.factors.passkeys import PasskeyRefused, list_passkeys
from authsite.web.deps import sudo_form
from authsite.web.passkeys import NO_CREDENTIAL, PasskeyId, register_passkey, remove_own_passkey
from authsite.web.user_auth import forget_challenge

SECURITY_PATH = "/account/security"
WRONG_SETUP_CODE = (
    "That code is not right. Check that the app shows an entry for this site, and type the code it shows now."
)


def security_router(site) -> APIRouter:
    # Logged in, and reachable by a user whom AUTHSITE_MFA_REQUIRED_SCOPES holds here: it is
    # where they add the second factor they lack.
    router = APIRouter(prefix=SECURITY_PATH, dependencies=[Depends(guards.signed_in)])
    SudoForm = Annotated[dict[str, str], Depends(sudo_form(site, lambda request: SECURITY_PATH))]

    @router.get("")
    async def security_page(request: Request) -> Response:
        return await _page(request)

    @router.post("/totp")
    async def start_totp_setup(request: Request, form: SudoForm) -> Response:
        summary = await _summary(request)
        if summary.has_totp:
            return await _page(request, error="An authenticator app is already on. Turn it off first to move "
                                              "to another one.", status_code=409)
        setup = site.factors.start_setup(user_id=request.user.id, username=request.user.username,
                                         bound_to=_session_binding(request))
        return _setup_page(request, setup)

    @router.post("/totp/confirm")
    async def confirm_totp_setup(request: Request, form: SudoForm) -> Response:
        setup = site.factors.reopen_setup(form.get("setup"), user_id=request.user.id,
                                          username=request.user.username, bound_to=_session_binding(request))
        if setup is None:
            fresh = site.factors.start_setup(user_id=request.user.id, username=request.user.username,
                                             bound_to=_session_binding(request))
            return _setup_page(request, fresh, notice=flash.MESSAGES["setup_expired"], status_code=400)
        code = form.get("code", "").strip()
        if not code:
            return _setup_page(request, setup, errors={"code": "Enter the 6-digit code your app shows."},
                               status_code=400)
        try:
            codes = await site.database.run(partial(
                site.factors.finish_setup, user_id=request.user.id, setup=setup, code=code, now=utcnow()
            ))
        except FactorError as exc:
            return await _page(request, error=str(exc), status_code=409)
        if codes is None:
            return _setup_page(request, setup, errors={"code": WRONG_SETUP_CODE}, status_code=400)
        await audit(site, request, Kind.MFA_ENABLED, user_id=request.user.id, factor="totp")
        notify(site, request, Notice.FACTOR_ADDED)
        return _codes_page(request, codes, first=True)

    @router.post("/totp/disable")
    async def disable_totp(request: Request, form: SudoForm) -> Response:
        try:
            removed = await site.database.run(partial(
                site.factors.remove_totp, user_id=request.user.id, required_scopes=site.settings.mfa_required
            ))
        except FactorError as exc:
            return await _page(request, error=str(exc), status_code=409)
        if removed:
            await audit(site, request, Kind.MFA_DISABLED, user_id=request.user.id, factor="totp")
            notify(site, request, Notice.FACTOR_REMOVED)
        return flash.redirect_with_flash(SECURITY_PATH, "totp_disabled", conn=request,
                                         cookie_secure=site.settings.cookie_secure)

    @router.post("/recovery-codes")
    async def replace_recovery_codes(request: Request, form: SudoForm) -> Response:
        try:
            codes = await site.database.run(partial(
                site.factors.replace_recovery_codes, user_id=request.user.id, now=utcnow()
            ))
        except FactorError as exc:
            return await _page(request, error=str(exc), status_code=409)
        await audit(site, request, Kind.RECOVERY_CODES_REPLACED, user_id=request.user.id)
        notify(site, request, Notice.RECOVERY_CODES_REPLACED)
        return _codes_page(request, codes, first=False)

    @router.post("/passkeys")
    async def add_passkey(request: Request, form: SudoForm) -> Response:
        credential = form.get("credential", "")
        if not site.passkeys.available:
            return await _page(request, error=site.passkeys.rp.unavailable, status_code=404)
        if not credential:
            return await _page(request, error=NO_CREDENTIAL.split(";")[0] + ".", status_code=400)
        try:
            passkey, codes = await register_passkey(site, request, credential, form.get("name", ""))
        except PasskeyRefused as exc:
            page = await _page(request, error=str(exc), status_code=400)
            forget_challenge(site, request, page)
            return page
        if codes:
            page = _codes_page(request, codes, first=True, factor="passkey")
        else:
            page = flash.redirect_with_flash(SECURITY_PATH, "passkey_added", conn=request,
                                             cookie_secure=site.settings.cookie_secure)
        forget_challenge(site, request, page)
        return page

    @router.post("/passkeys/{passkey_id:int}/delete")
    async def delete_passkey(request: Request, passkey_id: PasskeyId, form: SudoForm) -> Response:
        try:
            removed = await remove_own_passkey(site, request, passkey_id)
        except FactorError as exc:
            return await _page(request, error=str(exc), status_code=409)
        if not removed:
            return await _page(request, error="There is no such passkey on your account.", status_code=404)
        return flash.redirect_with_flash(SECURITY_PATH, "passkey_removed", conn=request,
                                         cookie_secure=site.settings.cookie_secure)

    async def _summary(request: Request):
        return await site.database.run(partial(site.factors.summary, user_id=request.user.id))

    async def _page(request: Request, *, error: str | None = None, status_code: int = 200) -> Response:
        summary = await _summary(request)
        passkeys = await site.database.run(partial(list_passkeys, user_id=request.user.id))
        required = sorted(site.settings.mfa_required.intersection(request.user.scopes))
        has_factor = summary.has_totp or bool(passkeys)
        context = {"summary": summary, "error": error, "required_by": required, "passkeys": passkeys,
                   "has_factor": has_factor, "passkeys_unavailable": site.passkeys.rp.unavailable,
                   "few_left": has_factor and summary.recovery_codes_left <= recovery_codes.FEW_LEFT}
        return site.pages.render(request, "security.html", context, status_code=status_code)

    def _setup_page(request: Request, setup, *, errors=None, notice=None, status_code: int = 200) -> Response:
        context = {"setup": setup, "errors": errors or {}, "notice": notice}
        return site.pages.render(request, "totp_setup.html", context, status_code=status_code)

    def _codes_page(request: Request, codes: list[str], *, first: bool, factor: str = "totp") -> Response:
        # factor: the account's first second factor, when `first` ("totp" or "passkey").
        made = utcnow()
        in_place_of = ("your second factor" if not first else
                       "your passkey" if factor == "passkey" else "a code from your authenticator app")
        text = (f"Recovery codes for {request.user.username} on {site.name}, made {made:%Y-%m-%d %H:%M} UTC.\n"
                f"Each works once, in place of {in_place_of}.\n\n" + "\n".join(codes) + "\n")
        context = {"codes": codes, "first": first, "factor": factor,
                   "download": "data:text/plain;charset=utf-8," + quote(text),
                   "filename": f"{_file_safe(site.name)}-recovery-codes.txt"}
        return site.pages.render(request, "recovery_codes.html", context)

    return router


def _session_binding(request: Request) -> str:
    # A setup started in one session cannot be finished from another (nor after logging in again).
    return request.scope[SESSION_SCOPE_KEY].token_hash


def _file_safe(name: str) -> str:
    kept = "".join(char if char.isalnum() else "-" for char in name.lower()).strip("-")
    return kept or "site"
