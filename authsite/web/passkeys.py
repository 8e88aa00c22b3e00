"""Passkeys in the pages and the JSON API: the ceremonies' options, signing in with a passkey,
adding and removing one. The browser side is static/passkeys.js: it fetches the options from the
API, runs the ceremony, and posts the browser's answer in a form's `credential` field (or, for an
API client, in the JSON body)."""

from functools import partial
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Request
from pydantic import BaseModel, StrictBool
from starlette.responses import JSONResponse, RedirectResponse, Response

from authsite import cookies, flash, guards
from authsite.events import Kind
from authsite.factors import second_factors
from authsite.factors.passkeys import (
    CHALLENGE_SECONDS, PasskeyAnswer, PasskeyInfo, PasskeyRefused, clean_name, default_name, list_passkeys,
)
from authsite.factors.second_factors import FactorError
from authsite.devices import describe_device
from authsite.middleware import SESSION_SCOPE_KEY
from authsite.models import utcnow
from authsite.notices import Notice
from authsite.passkey_logins import PasskeyLogin
from authsite.redirects import safe_next
from authsite.web.api import ErrorOut, LoginOut, _json_body, answers, user_json
from authsite.web.audit import audit, notify
from authsite.web.deps import require_sudo, same_origin_api_call
from authsite.web.inputs import client_ip, read_json
from authsite.web.user_auth import (
    answer_from, forget_challenge, known_device, set_session, too_many_attempts, warn_of_clone,
)

SECURITY_PATH = "/account/security"
PASSKEY_REFUSED = "That passkey was not accepted. Try again, or log in with your password."
NO_CREDENTIAL = ("Your browser sent no passkey. Passkeys need JavaScript and a browser that supports them; "
                 "you can log in with your password instead.")
TRUE_VALUES = {"on", "true", "1", "yes"}
# A row id: anything else is a 422 before the database sees it (Postgres integers are 32-bit).
PasskeyId = Annotated[int, Path(ge=1, le=2**31 - 1)]


class OptionsOut(BaseModel):
    publicKey: dict[str, Any]


class PasskeyLoginIn(BaseModel):
    credential: dict[str, Any]
    remember: StrictBool = False


class NewPasskeyIn(BaseModel):
    credential: dict[str, Any]
    name: str = ""


class PasskeyOut(BaseModel):
    id: int
    name: str
    created_at: str
    last_used_at: str | None
    backed_up: bool
    clone_suspected: bool


class NewPasskeyOut(BaseModel):
    passkey: PasskeyOut
    recovery_codes: list[str] | None


class PasskeysOut(BaseModel):
    passkeys: list[PasskeyOut]


# --- shared by the pages and the API


def unavailable(site) -> JSONResponse | None:
    """The answer when this site cannot offer passkeys (its base URL is an IP, or plain http)."""
    if site.passkeys.available:
        return None
    return JSONResponse({"detail": site.passkeys.rp.unavailable}, status_code=404)


def passkey_json(passkey: PasskeyInfo) -> dict:
    return {
        "id": passkey.id, "name": passkey.name, "created_at": passkey.created_at.isoformat(),
        "last_used_at": passkey.last_used_at.isoformat() if passkey.last_used_at else None,
        "backed_up": passkey.backed_up, "clone_suspected": passkey.clone_suspected_at is not None,
    }


async def _log_in(site, request: Request, credential: Any, *, remember: bool, via: str):
    current = request.scope.get(SESSION_SCOPE_KEY)
    result = await site.passkey_logins.log_in(PasskeyLogin(
        answer=answer_from(site, request, credential), remember=remember, ip=client_ip(request),
        user_agent=request.headers.get("user-agent"), via=via, known_device=known_device(site, request),
        # As for a password login: always a new token, and the browser's earlier session ends.
        replaces=current.token_hash if current is not None else None,
    ))
    if result.clone_of is not None:
        await warn_of_clone(site, request, user=result.clone_of)
    if result.user is not None and result.new_device:
        notify(site, request, Notice.NEW_DEVICE, user=result.user)
    return result


async def register_passkey(site, request: Request, credential: Any, name: str):
    """Check and keep a new passkey of the logged-in user (in sudo mode); returns it and, when it
    is the account's first second factor, its ten new recovery codes. Raises PasskeyRefused."""
    user = request.user
    name = clean_name(name) or default_name(describe_device(request.headers.get("user-agent")))
    sealed = request.cookies.get(cookies.passkey_challenge_cookie_name(_secure(site, request)))

    def register(conn):
        passkey = site.passkeys.register(conn, user_id=user.id, bound_to=_session_binding(request),
                                         sealed_challenge=sealed, credential=credential, name=name, now=utcnow())
        codes = site.factors.first_factor_codes(conn, user_id=user.id, now=utcnow())
        conn.commit()
        return passkey, codes

    passkey, codes = await site.database.run(register)
    await audit(site, request, Kind.PASSKEY_ADDED, user_id=user.id, name=passkey.name)
    notify(site, request, Notice.PASSKEY_ADDED, name=passkey.name)
    return passkey, codes


async def remove_own_passkey(site, request: Request, passkey_id: int) -> bool:
    """Raises FactorError when it is the last second factor of an account whose scopes need one."""
    user = request.user

    def remove(conn):
        names = {passkey.id: passkey.name for passkey in list_passkeys(conn, user_id=user.id)}
        removed = second_factors.remove_one_passkey(conn, user_id=user.id, passkey_id=passkey_id,
                                                    required_scopes=site.settings.mfa_required)
        conn.commit()
        return names.get(passkey_id) if removed else None

    name = await site.database.run(remove)
    if name is None:
        return False
    await audit(site, request, Kind.PASSKEY_REMOVED, user_id=user.id, name=name)
    notify(site, request, Notice.PASSKEY_REMOVED, name=name)
    return True


def _options_response(site, request: Request, options: dict, sealed: str) -> JSONResponse:
    response = JSONResponse({"publicKey": options}, headers={"cache-control": "no-store"})
    cookies.set_passkey_challenge_cookie(response, sealed, secure=_secure(site, request), max_age=CHALLENGE_SECONDS)
    return response


def _secure(site, request: Request) -> bool:
    return cookies.is_secure(request.scope, site.settings.cookie_secure)


def _session_binding(request: Request) -> str:
    # A passkey's creation begun in one session cannot be finished in another.
    return request.scope[SESSION_SCOPE_KEY].token_hash


# --- the pages


def passkey_pages_router(site) -> APIRouter:
    router = APIRouter()
    Form = Annotated[dict[str, str], Depends(site.checked_form)]

    @router.post("/auth/passkey", dependencies=[Depends(guards.already_logged_in)])
    async def sign_in(request: Request, form: Form) -> Response:
        next_path = safe_next(form.get("next"), site.login_redirect)
        credential = form.get("credential", "")
        if not site.passkeys.available or not credential:
            return _login_page(request, next_path, NO_CREDENTIAL, status_code=400)
        remember = form.get("remember", "") in TRUE_VALUES
        result = await _log_in(site, request, credential, remember=remember, via="form")
        if result.retry_after is not None:
            page = _login_page(request, next_path, too_many_attempts(result.retry_after), status_code=429)
            page.headers["retry-after"] = str(result.retry_after)
            return page
        if result.user is None:
            page = _login_page(request, next_path, PASSKEY_REFUSED, status_code=401)
            forget_challenge(site, request, page)
            return page
        response = RedirectResponse(next_path, status_code=303)
        set_session(site, request, response, result.token, user_id=result.user.id, remember=remember)
        forget_challenge(site, request, response)
        return response

    def _login_page(request: Request, next_path: str, message: str, *, status_code: int) -> Response:
        context = {"username": "", "next": next_path, "errors": {"form": message}}
        return site.pages.render(request, "login.html", context, status_code=status_code)

    return router


# --- the JSON API


def passkey_api_router(site) -> APIRouter:
    router = APIRouter(prefix="/api")
    state_changing = [Depends(same_origin_api_call)]
    off = {404: {"description": "This site offers no passkeys (AUTHSITE_BASE_URL is an IP "
                                                "address or plain http); `detail` says why."}}

    def with_off(entries: dict) -> dict:
        return {**entries, 404: {**off[404], "model": ErrorOut}}

    @router.post("/auth/passkey/options", dependencies=state_changing, response_model=None,
                 responses={200: {"model": OptionsOut, "description": (
                     "Options for `navigator.credentials.get()` (WebAuthn JSON: base64url strings), for a "
                     "passkey login, a second step or a confirmation; the challenge is kept in a cookie for "
                     "5 minutes and works once.")}, **with_off(answers(403, 503))})
    async def request_options(request: Request) -> Response:
        if refusal := unavailable(site):
            return refusal
        options, sealed = site.passkeys.authentication_options()
        return _options_response(site, request, options, sealed)

    @router.post("/auth/passkey/verify", dependencies=state_changing, openapi_extra=_json_body(PasskeyLoginIn),
                 response_model=None,
                 responses={200: {"model": LoginOut, "description": "Logged in; the session cookie is set."},
                            **with_off(answers(400, 401, 403, 413, 415, 422, 429, 503, reworded={
                                401: "The passkey was not accepted (unknown, wrong origin, expired or used "
                                     "challenge, user not verified)."}))})
    async def sign_in(request: Request) -> Response:
        if refusal := unavailable(site):
            return refusal
        body = await read_json(request, PasskeyLoginIn)
        result = await _log_in(site, request, body.credential, remember=body.remember, via="api")
        if result.retry_after is not None:
            return JSONResponse({"detail": too_many_attempts(result.retry_after)}, status_code=429,
                                headers={"retry-after": str(result.retry_after)})
        if result.user is None:
            response = JSONResponse({"detail": PASSKEY_REFUSED}, status_code=401)
        else:
            response = JSONResponse({"user": user_json(result.user)})
            set_session(site, request, response, result.token, user_id=result.user.id, remember=body.remember)
        forget_challenge(site, request, response)
        return response

    @router.get("/account/passkeys", dependencies=[Depends(guards.logged_in)], response_model=None,
                responses={200: {"model": PasskeysOut, "description": "The logged-in user's passkeys."},
                           **answers(401, 403, 503)})
    async def passkeys(request: Request) -> Response:
        found = await site.database.run(partial(list_passkeys, user_id=request.user.id))
        return JSONResponse({"passkeys": [passkey_json(passkey) for passkey in found]})

    @router.post("/account/passkeys/options", dependencies=[*state_changing, Depends(guards.signed_in)],
                 response_model=None,
                 responses={200: {"model": OptionsOut, "description": (
                     "Options for `navigator.credentials.create()`; the challenge is kept in a cookie for 5 "
                     "minutes, for this session only.")},
                            **with_off(answers(401, 403, 503, reworded={
                                403: "`reauthentication required` (confirm at /api/auth/confirm first), or sent "
                                     "from another origin."}))})
    async def creation_options(request: Request) -> Response:
        if refusal := unavailable(site):
            return refusal
        await require_sudo(site, request, next_path=SECURITY_PATH)
        user = request.user
        options, sealed = await site.database.run(partial(
            site.passkeys.registration_options, user_id=user.id, username=user.username,
            display_name=user.display_name, bound_to=_session_binding(request),
        ))
        return _options_response(site, request, options, sealed)

    @router.post("/account/passkeys/verify", status_code=201, dependencies=[*state_changing, Depends(guards.signed_in)],
                 openapi_extra=_json_body(NewPasskeyIn), response_model=None,
                 responses={201: {"model": NewPasskeyOut, "description": (
                     "Added. `recovery_codes`: ten new codes, shown this once, when this is the account's "
                     "first second factor (else null).")},
                            **with_off(answers(400, 401, 403, 413, 415, 422, 503, reworded={
                                400: "The body is not valid JSON, or the passkey could not be verified "
                                     "(`detail` says what to do).",
                                403: "`reauthentication required`, or sent from another origin."}))})
    async def add_passkey(request: Request) -> Response:
        if refusal := unavailable(site):
            return refusal
        await require_sudo(site, request, next_path=SECURITY_PATH)
        body = await read_json(request, NewPasskeyIn)
        try:
            passkey, codes = await register_passkey(site, request, body.credential, body.name)
        except PasskeyRefused as exc:
            response = JSONResponse({"detail": str(exc)}, status_code=400)
        else:
            response = JSONResponse({"passkey": passkey_json(passkey), "recovery_codes": codes}, status_code=201)
        forget_challenge(site, request, response)
        return response

    @router.delete("/account/passkeys/{passkey_id:int}", status_code=204,
                   dependencies=[*state_changing, Depends(guards.signed_in)], response_model=None,
                   responses={204: {"description": "Removed."},
                              **answers(401, 403, 503, reworded={
                                  403: "`reauthentication required`, or sent from another origin."}),
                              404: {"model": ErrorOut, "description": "No such passkey of yours."},
                              409: {"model": ErrorOut, "description": (
                                  "It is the last second factor, and the user's scopes need one.")}})
    async def delete_passkey(request: Request, passkey_id: PasskeyId) -> Response:
        await require_sudo(site, request, next_path=SECURITY_PATH)
        try:
            removed = await remove_own_passkey(site, request, passkey_id)
        except FactorError as exc:
            return JSONResponse({"detail": str(exc)}, status_code=409)
        if not removed:
            return JSONResponse({"detail": "There is no such passkey on your account."}, status_code=404)
        return Response(status_code=204)

    return router

