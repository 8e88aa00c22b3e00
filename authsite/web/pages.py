"""Pages every authsite site has: the home page and the health check."""

import asyncio

from fastapi import APIRouter, Depends, Request
from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError
from starlette.responses import JSONResponse, Response

from authsite import guards

HEALTH_TIMEOUT_SECONDS = 3


def home_router(site) -> APIRouter:
    router = APIRouter()

    # A user who must add a second factor is sent to do so from here too (AUTHSITE_MFA_REQUIRED_SCOPES).
    @router.get("/", include_in_schema=False, dependencies=[Depends(guards.second_factor_policy)])
    async def home(request: Request) -> Response:
        return site.pages.render(request, "home.html")

    return router


def health_router(site) -> APIRouter:
    router = APIRouter()

    @router.get("/healthz")
    async def healthz() -> Response:
        try:
            async with asyncio.timeout(HEALTH_TIMEOUT_SECONDS):
                async with site.database.engine.connect() as conn:
                    await conn.execute(text("SELECT 1"))
        except (SQLAlchemyError, OSError, TimeoutError):
            return JSONResponse({"status": "unavailable"}, status_code=503)
        return JSONResponse({"status": "ok"})

    return router
