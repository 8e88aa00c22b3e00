"""The JSON API: log in, log out, who am I. Same sessions and cookie as the pages."""

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, PlainValidator
from starlette.responses import JSONResponse, Response

from authsite import guards
from authsite.factors.passkeys import PasskeyAnswer
from authsite.events import Kind
from authsite.guards import CurrentUser
from authsite.web.audit import audit
from authsite.web.deps import same_origin_api_call
from authsite.web.inputs import read_json, require_json
from authsite.web.confirm import reauthenticate
from authsite.web.user_auth import (
    answer_from, attempt_login, attempt_second_step, end_second_step, has_pending_login, hold_for_second_step, log_out_user,
    renew_session_cookie, set_session, too_many_attempts,
)

FAILED_LOGIN_MESSAGE = "Wrong username or password."
NO_PENDING_LOGIN = "No login is waiting for a code (it lasts five minutes). Log in again."
WRONG_CODE = "That code is not right."
TOO_MANY_CODES = "Too many wrong codes. Log in again."
PASSKEY_REFUSED = "That passkey was not accepted."
EMAIL_UNCONFIRMED = "email not confirmed: open the link mailed to the account's address, then log in"


def _any_text(value: object) -> str:
    if not isinstance(value, str):
        raise ValueError("must be a string")
    return value


# Any string at all, even one pydantic would refuse (a lone surrogate): an odd
# name or password is a plain failed login (401), like any other wrong one.
# The 64 KiB body limit caps the length.
AnyText = Annotated[str, PlainValidator(_any_text, json_schema_input_type=str)]


class LoginIn(BaseModel):
    username: AnyText
    password: AnyText
    remember: bool = False


class EmptyIn(BaseModel):
    pass


class CodeIn(BaseModel):
    """A code, or a passkey's answer (`credential`, from `navigator.credentials.get()` with the
    options of /api/auth/passkey/options)."""

    code: AnyText = ""
    credential: dict[str, Any] | None = None


class ConfirmIn(BaseModel):
    """The password (and a code, for an account with a second factor), or a passkey's answer alone."""

    password: AnyText = ""
    code: AnyText = ""
    credential: dict[str, Any] | None = None


class SecondStepOut(BaseModel):
    mfa_required: bool
    methods: list[str]


class UserOut(BaseModel):
    id: int
    username: str
    scopes: list[str]
    email: str | None
    first_name: str | None
    last_name: str | None


class LoginOut(BaseModel):
    user: UserOut


class ErrorOut(BaseModel):
    detail: str


class FieldErrorOut(BaseModel):
    loc: list[str | int]
    msg: str
    type: str


class InvalidFieldsOut(BaseModel):
    detail: list[FieldErrorOut]


RETRY_AFTER = {"Retry-After": {"description": "Seconds to wait before trying again.", "schema": {"type": "integer"}}}
# Every answer a route may give besides its success, for the OpenAPI document (what a client
# must handle, and what schemathesis holds the API to).
ANSWERS = {
    400: {"model": ErrorOut, "description": "The body is not valid JSON."},
    401: {"model": ErrorOut, "description": "Not logged in."},
    403: {"model": ErrorOut, "description": "Sent from another origin (`Origin` or `Sec-Fetch-Site`)."},
    413: {"model": ErrorOut, "description": "The body is larger than 64 KiB.",
          "content": {"text/plain": {"schema": {"type": "string"}}}},
    415: {"model": ErrorOut, "description": "The body is not `application/json`."},
    422: {"model": InvalidFieldsOut, "description": "Fields missing or of the wrong type, one entry each."},
    429: {"model": ErrorOut, "description": "Too many failed logins; try again later.", "headers": RETRY_AFTER},
    503: {"model": ErrorOut, "description": "The database is busy or out of reach; try again later.",
          "headers": RETRY_AFTER},
}


def answers(*statuses: int, reworded: dict[int, str] | None = None) -> dict[int, dict]:
    """The ANSWERS entries for `statuses`, with the descriptions in `reworded` put in their place."""
    chosen = {status: dict(ANSWERS[status]) for status in statuses}
    for status, text in (reworded or {}).items():
        chosen[status]["description"] = text
    return chosen


def _json_body(model: type[BaseModel]) -> dict:
    # Bodies are read by hand (for a 415 on the wrong content type), so the
    # schema is declared here for the OpenAPI document.
    schema = {"application/json": {"schema": model.model_json_schema()}}
    return {"requestBody": {"content": schema, "required": model is not EmptyIn}}


def user_json(user) -> dict:
    return {
        "id": user.id,
        "username": user.username,
        "scopes": list(user.scopes),
        "email": user.email,
        "first_name": user.first_name,
        "last_name": user.last_name,
    }


def api_router(site) -> APIRouter:
    router = APIRouter(prefix="/api")
    state_changing = [Depends(same_origin_api_call)]

    def passkey_answer(request: Request, credential: dict | None) -> PasskeyAnswer | None:
        return answer_from(site, request, credential) if credential is not None and site.passkeys.available else None

    @router.post("/auth/login", dependencies=state_changing, openapi_extra=_json_body(LoginIn),
                 responses={200: {"model": LoginOut, "description": "Logged in; the session cookie is set."},
                            202: {"model": SecondStepOut, "description": (
                                "The password is right and the account has a second factor: no session yet, "
                                "only a pending-login cookie (5 minutes). Send the code to /api/auth/mfa.")},
                            **answers(400, 401, 403, 413, 415, 422, 429, 503,
                                    reworded={401: "Wrong username or password.",
                                              403: "Sent from another origin, or (AUTHSITE_EMAIL_VERIFICATION="
                                                   "mandatory) the right password of an account whose address "
                                                   "is not confirmed yet: `email not confirmed...`"})})
    async def api_login(request: Request) -> Response:
        body = await read_json(request, LoginIn)
        outcome = await attempt_login(site, request, body.username.strip(), body.password, via="api",
                                      remember=body.remember)
        if outcome.retry_after is not None:
            detail = too_many_attempts(outcome.retry_after)
            return JSONResponse({"detail": detail}, status_code=429, headers={"retry-after": str(outcome.retry_after)})
        if outcome.unconfirmed is not None:
            return JSONResponse({"detail": EMAIL_UNCONFIRMED}, status_code=403)
        if outcome.needs_second_factor:
            response = JSONResponse({"mfa_required": True, "methods": list(outcome.methods)}, status_code=202)
            hold_for_second_step(site, request, response, outcome.pending)
            return response
        if outcome.user is None:
            return JSONResponse({"detail": FAILED_LOGIN_MESSAGE}, status_code=401)
        response = JSONResponse({"user": user_json(outcome.user)})
        set_session(site, request, response, outcome.token, user_id=outcome.user.id, remember=body.remember)
        return response

    @router.post("/auth/mfa", dependencies=state_changing, openapi_extra=_json_body(CodeIn),
                 responses={200: {"model": LoginOut, "description": "Logged in; the session cookie is set."},
                            **answers(400, 401, 403, 413, 415, 422, 429, 503, reworded={
                                401: "No login is waiting for a code (log in again), or the code is wrong.",
                                429: "Too many wrong codes: the pending login has ended (log in again), or "
                                     "too many failures for this account (wait Retry-After).",
                            })})
    async def api_second_step(request: Request) -> Response:
        body = await read_json(request, CodeIn)
        passkey = passkey_answer(request, body.credential)
        if not has_pending_login(site, request) or not (body.code.strip() or passkey):
            detail = NO_PENDING_LOGIN if not has_pending_login(site, request) else WRONG_CODE
            return JSONResponse({"detail": detail}, status_code=401)
        result = await attempt_second_step(site, request, body.code.strip(), via="api", passkey=passkey)
        if result.gone or result.ended:
            detail = NO_PENDING_LOGIN if result.gone else TOO_MANY_CODES
            response = JSONResponse({"detail": detail}, status_code=401 if result.gone else 429)
            end_second_step(site, request, response)
            return response
        if result.retry_after is not None:
            return JSONResponse({"detail": too_many_attempts(result.retry_after)}, status_code=429,
                                headers={"retry-after": str(result.retry_after)})
        if result.user is None:
            return JSONResponse({"detail": PASSKEY_REFUSED if passkey else WRONG_CODE}, status_code=401)
        response = JSONResponse({"user": user_json(result.user)})
        set_session(site, request, response, result.token, user_id=result.user.id, remember=result.remember)
        end_second_step(site, request, response)
        return response

    @router.post("/auth/confirm", status_code=204, dependencies=[*state_changing, Depends(guards.signed_in)],
                 openapi_extra=_json_body(ConfirmIn),
                 responses={204: {"description": (
                     "Confirmed: sensitive changes are allowed for AUTHSITE_SUDO_SECONDS; the session cookie "
                     "is set again with a new token.")},
                            **answers(400, 401, 403, 413, 415, 422, 429, 503, reworded={
                                401: "Not logged in, or the password or code is wrong.",
                                429: "Too many failures for this account; try again later.",
                            })})
    async def api_confirm(request: Request) -> Response:
        body = await read_json(request, ConfirmIn)
        outcome = await reauthenticate(site, request, password=body.password, code=body.code.strip(), via="api",
                                       passkey=passkey_answer(request, body.credential))
        if outcome.retry_after is not None:
            return JSONResponse({"detail": too_many_attempts(outcome.retry_after)}, status_code=429,
                                headers={"retry-after": str(outcome.retry_after)})
        if not outcome.confirmed:
            return JSONResponse({"detail": " ".join(outcome.errors.values())}, status_code=401)
        response = Response(status_code=204)
        renew_session_cookie(site, request, response, outcome.token)
        return response

    @router.post("/auth/logout", status_code=204, dependencies=state_changing, openapi_extra=_json_body(EmptyIn),
                 responses={204: {"description": "Logged out (also when there was no session)."},
                            **answers(400, 403, 413, 415, 422, 503)})
    async def api_logout(request: Request) -> Response:
        body = await request.body()
        # No body and no type: nothing to read (a cross-site form always sends a type). A body,
        # or a declared type, must be JSON: a cross-site form cannot send that without a preflight.
        if body or "content-type" in request.headers:
            require_json(request)
        if body:
            await read_json(request, EmptyIn)
        response = Response(status_code=204)
        if await log_out_user(site, request, response):
            await audit(site, request, Kind.LOGOUT, user_id=request.user.id, via="api")
        return response

    @router.get("/me", response_model=None, responses={200: {"model": UserOut, "description": "The logged-in user."},
                                                       **answers(401, 403, 503, reworded={403: (
                                                           "second factor required: the user's permissions need "
                                                           "a second factor, set up at /account/security")})})
    async def me(user: CurrentUser) -> dict:
        return user_json(user)

    return router

