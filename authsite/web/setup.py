"""The setup link: the first account of a site that has none, in the page and the JSON API
(authsite/first_admin.py). A dead link answers exactly as a page that does not exist."""

from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Request
from pydantic import BaseModel
from starlette.responses import JSONResponse, RedirectResponse, Response

from authsite import accounts, flash
from authsite.events import Kind
from authsite.headers import no_referrer_path
from authsite.web.api import AnyText, ErrorOut, LoginOut, _json_body, answers, user_json
from authsite.web.audit import audit
from authsite.web.deps import same_origin_api_call
from authsite.web.inputs import read_json
from authsite.web.user_auth import log_in_user

FIELDS = ("username", "email", "password", "password_confirm")
CHANGED_SINCE = "The account was made, but changed before its session started: log in."


class SetupIn(BaseModel):
    username: AnyText
    password: AnyText
    password_confirm: AnyText
    email: AnyText = ""


class SetupRefusedOut(BaseModel):
    detail: str
    errors: dict[str, str]


def setup_router(site) -> APIRouter:
    router = APIRouter(prefix="/auth/setup")
    Form = Annotated[dict[str, str], Depends(site.checked_form)]

    @router.get("/{token}")
    async def setup_page(request: Request, token: str) -> Response:
        await _live_or_not_found(site, token)
        return _page(site, request, token, {}, {})

    @router.post("/{token}")
    async def set_up(request: Request, token: str, form: Form) -> Response:
        # Only these fields are read: the scopes are the first admin's, whatever else is sent.
        values = {name: form.get(name, "") for name in FIELDS}
        try:
            user = await _create_first_admin(site, token, values)
        except accounts.AccountError as exc:
            shown = {"username": values["username"][:100], "email": values["email"][:300]}
            return _page(site, request, token, shown, exc.errors, status_code=400)
        await audit(site, request, Kind.FIRST_ADMIN_CREATED, user_id=user.id, via="setup_link")
        response = flash.redirect_with_flash("/admin/users", "first_admin", conn=request,
                                             cookie_secure=site.settings.cookie_secure)
        if not await log_in_user(site, request, response, user, remember=False):
            # Changed in the instant since it was made (its password set from the shell, say).
            return RedirectResponse("/auth/login", status_code=303)
        return response

    return router


def setup_api_router(site) -> APIRouter:
    router = APIRouter(prefix="/api/auth/setup")

    @router.post("/{token}", status_code=201, dependencies=[Depends(same_origin_api_call)],
                 openapi_extra=_json_body(SetupIn), response_model=None,
                 responses={201: {"model": LoginOut, "description": (
                     "The site's first account, with the scopes authenticated, admin and super; logged in "
                     "(the session cookie is set). The link printed by `run.py` works once.")},
                            400: {"model": SetupRefusedOut, "description": (
                                "Fields refused by the sign-up rules, every one in `errors`; the link still works.")},
                            404: {"model": ErrorOut,
                                  "description": "No such link: wrong, used, expired, or the site has users."},
                            409: {"model": ErrorOut, "description": (
                                "The account was made but changed before its session started; log in.")},
                            **answers(403, 413, 415, 422, 503)})
    async def api_set_up(request: Request, token: str) -> Response:
        await _live_or_not_found(site, token)
        body = await read_json(request, SetupIn)
        try:
            user = await _create_first_admin(site, token, body.model_dump())
        except accounts.AccountError as exc:
            detail = " ".join(exc.errors.values())
            return JSONResponse({"detail": detail, "errors": exc.errors}, status_code=400)
        await audit(site, request, Kind.FIRST_ADMIN_CREATED, user_id=user.id, via="api_setup_link")
        response = JSONResponse({"user": user_json(user)}, status_code=201)
        if not await log_in_user(site, request, response, user, remember=False):
            return JSONResponse({"detail": CHANGED_SINCE}, status_code=409)
        return response

    return router


async def _live_or_not_found(site, token: str) -> None:
    # The plain 404 of an unknown page, for every reason alike: nothing tells a visitor whether a
    # link was ever made, used, expired or killed by an account made elsewhere.
    if not await site.setup_links.is_live(token):
        raise HTTPException(404)


async def _create_first_admin(site, token: str, values: dict[str, str]):
    user = await site.setup_links.create_first_admin(
        hasher=site.hasher, token=token, username=values["username"].strip(), password=values["password"],
        password_confirm=values["password_confirm"], email=values["email"],
        email_required=site.settings.email_verification == "mandatory",
    )
    if user is None:
        raise HTTPException(404)
    return user


def _page(site, request: Request, token: str, values: dict, errors: dict, *, status_code: int = 200) -> Response:
    context = {"token": token, "values": values, "errors": errors,
               "email_required": site.settings.email_verification == "mandatory"}
    page = site.pages.render(request, "setup.html", context, status_code=status_code)
    page.headers["cache-control"] = "no-store"
    return no_referrer_path(page)
