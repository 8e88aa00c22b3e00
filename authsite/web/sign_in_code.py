"""Signing in by an emailed code, in the pages and the JSON API (authsite/sign_in_codes.py)."""

from functools import partial
from typing import Annotated
from urllib.parse import quote

from fastapi import APIRouter, Depends, HTTPException, Request
from pydantic import BaseModel, StrictBool, StringConstraints
from starlette.responses import JSONResponse, RedirectResponse, Response

from authsite import cookies, flash, guards, tokens
from authsite.events import Kind
from authsite.factors.second_factors import available_methods
from authsite.mail import Mail
from authsite.middleware import SESSION_SCOPE_KEY
from authsite.models import utcnow
from authsite.notices import Notice
from authsite.redirects import safe_next
from authsite.sign_in_codes import CODE_LIFETIME, SignedIn
from authsite.web.api import AnyText, ErrorOut, LoginOut, SecondStepOut, _json_body, answers, user_json
from authsite.web.audit import audit, notify
from authsite.web.auth import second_step_url
from authsite.web.deps import same_origin_api_call
from authsite.web.inputs import client_ip, read_json
from authsite.web.user_auth import hold_for_second_step, set_session, too_many_attempts

SENT = "If an account has this address, a sign-in code is on its way. It works once, for 10 minutes."
WRONG_CODE = "That code is not right. Type the code from the mail we just sent."
GONE = "No sign-in code is waiting for this browser (they last 10 minutes). Ask for a new one."
TOO_MANY = "Too many wrong codes. Ask for a new one."
TRUE_VALUES = {"on", "true", "1", "yes"}

CODE_MAIL = """Hello {username},

Your sign-in code for {site} is:

    {code}

Type it on the page that asked for it, or open this link in the same browser:

{link}

Both work once, for 10 minutes. If you did not ask to sign in, ignore this mail: nobody can
use the code without also reading your mail.

-- 
{site}
"""


class CodeRequestIn(BaseModel):
    # Something shaped like an address (the same answer follows whether or not an account has it).
    email: Annotated[str, StringConstraints(min_length=3, max_length=254, pattern=r"^[^@\s]+@[^@\s]+$")]
    remember: StrictBool = False


class CodeConfirmIn(BaseModel):
    code: AnyText


def _secure(site, request: Request) -> bool:
    return cookies.is_secure(request.scope, site.settings.cookie_secure)


def _browser_token(site, request: Request) -> str | None:
    return request.cookies.get(cookies.sign_in_code_cookie_name(_secure(site, request)))


async def ask_for_code(site, request: Request, email: str, *, remember: bool, next_path: str,
                       response: Response) -> int | None:
    """Mail a code if an account has `email` (in the background: the answer takes the same time
    either way) and give this browser its token. Returns Retry-After seconds when throttled."""
    attempt = await site.throttle.attempt(site.limits.code_mail(email.strip(), client_ip(request)))
    if attempt.is_throttled:
        return attempt.retry_after
    browser_token = tokens.new_token()
    cookies.set_sign_in_code_cookie(response, browser_token, secure=_secure(site, request),
                                    max_age=int(CODE_LIFETIME.total_seconds()))
    who = {"ip": client_ip(request), "user_agent": request.headers.get("user-agent")}

    async def code_mail() -> Mail | None:
        mailable = await site.database.run(partial(
            site.sign_in_codes.request, email=email.strip(), browser_token=browser_token, remember=remember,
            next_path=next_path, now=utcnow(),
        ))
        await site.audit.record(Kind.SIGN_IN_CODE_SENT, user_id=mailable.user.id if mailable else None,
                                username=None if mailable else email.strip()[:64], sent=mailable is not None, **who)
        if mailable is None:
            return None
        body = CODE_MAIL.format(username=mailable.user.username, site=site.name, code=mailable.code,
                                link=f"{site.settings.public_url}/auth/code/{mailable.link}")
        return Mail(to=mailable.user.email, subject=f"Your {site.name} sign-in code", body=body)

    await site.mailer.compose_later(code_mail)
    return None


async def finish(site, request: Request, signed: SignedIn, response: Response, *, via: str) -> None:
    """A right code or link: the session (or the pending login of the second step) on `response`."""
    cookies.clear_sign_in_code_cookie(response, secure=_secure(site, request))
    if signed.pending:
        hold_for_second_step(site, request, response, signed.pending)
        return
    set_session(site, request, response, signed.token, user_id=signed.user.id, remember=signed.remember)
    await audit(site, request, Kind.LOGIN, user_id=signed.user.id, via=via, factor="email_code")
    known = site.devices.accounts(request.cookies.get(cookies.device_cookie_name(_secure(site, request))))
    if signed.user.id not in known:
        notify(site, request, Notice.NEW_DEVICE, user=signed.user)


def _replaces(request: Request) -> str | None:
    current = request.scope.get(SESSION_SCOPE_KEY)
    return current.token_hash if current is not None else None


def sign_in_code_router(site) -> APIRouter:
    router = APIRouter(prefix="/auth/code", dependencies=[Depends(guards.already_logged_in)])
    Form = Annotated[dict[str, str], Depends(site.checked_form)]

    async def enabled() -> None:
        if not site.settings.login_by_code:
            raise HTTPException(404, "Sign-in codes are off on this site.")

    on = [Depends(enabled)]

    @router.get("", dependencies=on)
    async def ask_page(request: Request, next: str = "") -> Response:
        return site.pages.render(request, "code_request.html", {"next": safe_next(next, site.login_redirect), "email": ""})

    @router.post("", dependencies=on)
    async def ask(request: Request, form: Form) -> Response:
        email, next_path = form.get("email", "").strip(), safe_next(form.get("next"), site.login_redirect)
        if not email or "@" not in email or len(email) > 254:
            context = {"next": next_path, "email": email[:254], "errors": {"email": "Enter your email address."}}
            return site.pages.render(request, "code_request.html", context, status_code=400)
        response = RedirectResponse(_confirm_url(next_path), status_code=303)
        retry = await ask_for_code(site, request, email, remember=form.get("remember", "") in TRUE_VALUES,
                                   next_path=next_path, response=response)
        if retry is not None:
            context = {"next": next_path, "email": email[:254], "errors": {"form": too_many_attempts(retry)}}
            page = site.pages.render(request, "code_request.html", context, status_code=429)
            page.headers["retry-after"] = str(retry)
            return page
        return response

    @router.get("/confirm", dependencies=on)
    async def code_page(request: Request, next: str = "") -> Response:
        if not _browser_token(site, request):
            return RedirectResponse("/auth/code", status_code=303)
        return site.pages.render(request, "code_confirm.html", {"next": safe_next(next, site.login_redirect)})

    @router.post("/confirm", dependencies=on)
    async def check_code(request: Request, form: Form) -> Response:
        next_path = safe_next(form.get("next"), site.login_redirect)
        code = form.get("code", "").strip()
        if not code:
            return _code_form(request, next_path, {"code": "Enter the code from the mail."}, 400)
        signed = await site.database.run(partial(
            site.sign_in_codes.confirm_code, browser_token=_browser_token(site, request), code=code[:64],
            ip=client_ip(request), user_agent=request.headers.get("user-agent"), replaces=_replaces(request),
            now=utcnow(),
        ))
        if signed.gone or signed.ended:
            return flash.redirect_with_flash("/auth/code", "code_expired" if signed.gone else "too_many_codes",
                                             conn=request, cookie_secure=site.settings.cookie_secure)
        if signed.user is None:
            await audit(site, request, Kind.LOGIN_FAILED, reason="wrong_code", via="code")
            return _code_form(request, next_path, {"code": WRONG_CODE}, 401)
        response = _signed_in_answer(request, signed)
        await finish(site, request, signed, response, via="code")
        return response

    @router.get("/{link}", dependencies=on)
    async def open_link(request: Request, link: str) -> Response:
        return await _link(request, link, confirmed=False)

    @router.post("/{link}", dependencies=on)
    async def confirm_link(request: Request, link: str, form: Form) -> Response:
        return await _link(request, link, confirmed=True)

    async def _link(request: Request, link: str, *, confirmed: bool) -> Response:
        signed = await site.database.run(partial(
            site.sign_in_codes.open_link, link_token=link, browser_token=_browser_token(site, request),
            confirmed=confirmed, ip=client_ip(request), user_agent=request.headers.get("user-agent"),
            replaces=_replaces(request), now=utcnow(),
        ))
        if signed.gone:
            context = {"title": "Sign-in link not valid", "message": GONE, "link": ("/auth/code", "Ask for a new code")}
            return site.pages.render(request, "error.html", context, status_code=400)
        if signed.other_browser:
            # Not the browser that asked (another device, a mail scanner): nothing happens until asked.
            return site.pages.render(request, "code_link.html", {"link": link, "to": signed.to})
        response = _signed_in_answer(request, signed)
        await finish(site, request, signed, response, via="code_link")
        return response

    def _signed_in_answer(request: Request, signed: SignedIn) -> Response:
        if signed.pending:
            return RedirectResponse(second_step_url(signed.next_path), status_code=303)
        if signed.took_over:
            # The first proof of this address: what was set up before it (by whoever) is gone.
            return flash.redirect_with_flash("/account", "address_proved_by_code", conn=request,
                                             cookie_secure=site.settings.cookie_secure)
        return RedirectResponse(signed.next_path, status_code=303)

    def _code_form(request: Request, next_path: str, errors: dict, status_code: int) -> Response:
        return site.pages.render(request, "code_confirm.html", {"next": next_path, "errors": errors},
                                 status_code=status_code)

    return router


def _confirm_url(next_path: str) -> str:
    return "/auth/code/confirm" if next_path == "/" else f"/auth/code/confirm?next={quote(next_path, safe='/')}"


def sign_in_code_api_router(site) -> APIRouter:
    router = APIRouter(prefix="/api/auth/code")
    state_changing = [Depends(same_origin_api_call)]
    off = {404: {"model": ErrorOut, "description": "Sign-in codes are off (AUTHSITE_LOGIN_BY_CODE=false)."}}

    @router.post("", status_code=202, dependencies=state_changing, openapi_extra=_json_body(CodeRequestIn),
                 response_model=None,
                 responses={202: {"model": ErrorOut, "description": (
                     "The same answer whether or not an account has the address; if one does, a code (and a "
                     "link) is mailed, valid 10 minutes, for this client (a cookie). Send it to "
                     "/api/auth/code/confirm.")},
                            **answers(400, 403, 413, 415, 422, 429, 503), **off})
    async def ask(request: Request) -> Response:
        if not site.settings.login_by_code:
            return JSONResponse({"detail": "Sign-in codes are off on this site."}, status_code=404)
        body = await read_json(request, CodeRequestIn)
        response = JSONResponse({"detail": SENT}, status_code=202)
        retry = await ask_for_code(site, request, body.email[:254], remember=body.remember, next_path=site.login_redirect,
                                   response=response)
        if retry is not None:
            return JSONResponse({"detail": too_many_attempts(retry)}, status_code=429,
                                headers={"retry-after": str(retry)})
        return response

    @router.post("/confirm", dependencies=state_changing, openapi_extra=_json_body(CodeConfirmIn),
                 response_model=None,
                 responses={200: {"model": LoginOut, "description": "Signed in; the session cookie is set."},
                            202: {"model": SecondStepOut, "description": (
                                "The code is right and the account has a second factor: send it to "
                                "/api/auth/mfa.")},
                            **answers(400, 401, 403, 413, 415, 422, 429, 503, reworded={
                                401: "The code is wrong, or no code is waiting for this client.",
                                429: "The fifth wrong code: ask for a new one."}), **off})
    async def confirm(request: Request) -> Response:
        if not site.settings.login_by_code:
            return JSONResponse({"detail": "Sign-in codes are off on this site."}, status_code=404)
        body = await read_json(request, CodeConfirmIn)
        signed = await site.database.run(partial(
            site.sign_in_codes.confirm_code, browser_token=_browser_token(site, request), code=body.code.strip()[:64],
            ip=client_ip(request), user_agent=request.headers.get("user-agent"), replaces=_replaces(request),
            now=utcnow(),
        ))
        if signed.gone or signed.ended:
            return JSONResponse({"detail": GONE if signed.gone else TOO_MANY}, status_code=401 if signed.gone else 429)
        if signed.user is None:
            await audit(site, request, Kind.LOGIN_FAILED, reason="wrong_code", via="api_code")
            return JSONResponse({"detail": WRONG_CODE}, status_code=401)
        if signed.pending:
            methods = await site.database.run(partial(available_methods, user_id=signed.user.id))
            response = JSONResponse({"mfa_required": True, "methods": methods}, status_code=202)
        else:
            response = JSONResponse({"user": user_json(signed.user)})
        await finish(site, request, signed, response, via="api_code")
        return response

    return router

