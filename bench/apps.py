"""The two apps the benchmark serves the same small page from: bare FastAPI, and authsite guarding it.

uvicorn loads them by factory: `bench.apps:bare_app` and `bench.apps:protected_app`
(the latter reads AUTHSITE_* like run.py)."""

from fastapi import Depends, FastAPI
from fastapi.responses import HTMLResponse

from authsite import AuthSite, Settings, logged_in

PAGE = "<!doctype html><title>bench</title><p>Hello, {name}.</p>"


def bare_app() -> FastAPI:
    app = FastAPI(docs_url=None, redoc_url=None, openapi_url=None)

    @app.get("/page", response_class=HTMLResponse)
    async def page() -> str:
        return PAGE.format(name="visitor")

    return app


def protected_app() -> FastAPI:
    app = FastAPI(docs_url=None, redoc_url=None, openapi_url=None)
    AuthSite(Settings()).install(app)

    @app.get("/page", response_class=HTMLResponse)
    async def page(user=Depends(logged_in)) -> str:
        return PAGE.format(name=user.username)

    return app
