"""The second step of a login: a passkey, the code from an authenticator app, or a recovery code."""

from typing import Annotated

from fastapi import APIRouter, Depends, Request
from starlette.responses import RedirectResponse, Response

from authsite import flash, guards
from authsite.redirects import safe_next

from authsite.web.user_auth import answer_from, forget_challenge, attempt_second_step, end_second_step, has_pending_login, set_session, too_many_attempts

PASSKEY_REFUSED = "That passkey was not accepted. Use a passkey of this account, or type a code."
WRONG_CODE = "That code is not right. Type the code your authenticator app shows now, or a recovery code."
CODE_MISSING = "Enter the code from your authenticator app, or a recovery code."


def mfa_router(site) -> APIRouter:
    router = APIRouter(prefix="/auth", dependencies=[Depends(guards.already_logged_in)])
    Form = Annotated[dict[str, str], Depends(site.checked_form)]

    def back_to_login(request: Request, notice: str) -> Response:
        response = flash.redirect_with_flash("/auth/login", notice, conn=request,
                                             cookie_secure=site.settings.cookie_secure)
        end_second_step(site, request, response)
        return response

    @router.get("/mfa")
    async def code_page(request: Request, next: str = "") -> Response:
        if not has_pending_login(site, request):
            return RedirectResponse("/auth/login", status_code=303)
        # Nothing about the account is shown: the pending cookie alone tells nobody whose it is.
        return _form(request, safe_next(next, site.login_redirect))

    @router.post("/mfa")
    async def check_code(request: Request, form: Form) -> Response:
        next_path = safe_next(form.get("next"), site.login_redirect)
        if not has_pending_login(site, request):
            return RedirectResponse("/auth/login", status_code=303)
        code, credential = form.get("code", "").strip(), form.get("credential", "")
        if not code and not credential:
            return _form(request, next_path, errors={"code": CODE_MISSING}, status_code=400)
        passkey = answer_from(site, request, credential) if credential else None
        result = await attempt_second_step(site, request, code, via="form", passkey=passkey)
        if result.gone:
            return back_to_login(request, "login_expired")
        if result.ended:
            return back_to_login(request, "too_many_codes")
        if result.retry_after is not None:
            page = _form(request, next_path, errors={"code": too_many_attempts(result.retry_after)}, status_code=429)
            page.headers["retry-after"] = str(result.retry_after)
            return page
        if result.user is None:
            wrong = {"form": PASSKEY_REFUSED} if passkey else {"code": WRONG_CODE}
            return _form(request, next_path, errors=wrong, status_code=401)
        if result.codes_left is not None:
            response = flash.redirect_with_flash(next_path, "recovery_code_used", conn=request,
                                                 cookie_secure=site.settings.cookie_secure)
        else:
            response = RedirectResponse(next_path, status_code=303)
        set_session(site, request, response, result.token, user_id=result.user.id, remember=result.remember)
        end_second_step(site, request, response)
        if passkey:
            forget_challenge(site, request, response)
        return response

    def _form(request: Request, next_path: str, *, errors=None, status_code: int = 200) -> Response:
        context = {"next": next_path, "errors": errors or {}}
        return site.pages.render(request, "mfa.html", context, status_code=status_code)

    return router
