"""The JSON API: log in, log out, who am I. Same sessions and cookie as the pages."""

from typing import Annotated

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, PlainValidator
from starlette.responses import JSONResponse, Response

from authsite.events import Kind
from authsite.guards import CurrentUser
from authsite.web.audit import audit
from authsite.web.deps import same_origin_api_call
from authsite.web.inputs import read_json, require_json
from authsite.web.user_auth import attempt_login, log_out_user, set_session, too_many_attempts

FAILED_LOGIN_MESSAGE = "Wrong username or password."


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

    @router.post("/auth/login", dependencies=state_changing, openapi_extra=_json_body(LoginIn))
    async def api_login(request: Request) -> Response:
        body = await read_json(request, LoginIn)
        outcome = await attempt_login(site, request, body.username.strip(), body.password, via="api",
                                      remember=body.remember)
        if outcome.retry_after is not None:
            detail = too_many_attempts(outcome.retry_after)
            return JSONResponse({"detail": detail}, status_code=429, headers={"retry-after": str(outcome.retry_after)})
        if outcome.user is None:
            return JSONResponse({"detail": FAILED_LOGIN_MESSAGE}, status_code=401)
        response = JSONResponse({"user": user_json(outcome.user)})
        set_session(site, request, response, outcome.token, remember=body.remember)
        return response

    @router.post("/auth/logout", status_code=204, dependencies=state_changing, openapi_extra=_json_body(EmptyIn))
    async def api_logout(request: Request) -> Response:
        require_json(request)
        if await request.body():
            await read_json(request, EmptyIn)
        response = Response(status_code=204)
        if await log_out_user(site, request, response):
            await audit(site, request, Kind.LOGOUT, user_id=request.user.id, via="api")
        return response

    @router.get("/me")
    async def me(user: CurrentUser) -> dict:
        return user_json(user)

    return router

