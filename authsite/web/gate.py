"""Everything authsite serves, behind one cheap check, so the host app's own routes do not pay for it.

Starlette tries an app's routes in order, and an included FastAPI router tries every route it
holds. With authsite's thirty-odd routes ahead of the host's, each of the host's requests paid
about a tenth of its throughput only to learn "not one of these" (bench/RESULTS.md). The gate
settles that with one string prefix test; only paths under authsite's prefixes go on to the
routes' own patterns, and only a path one of them matches is handed to authsite's router.

The JSON API still appears in the host app's OpenAPI docs: `document_routes` adds it through
FastAPI's documented way of extending the schema (replacing `app.openapi`).
"""

from collections.abc import Callable
from functools import cache

from fastapi import APIRouter, FastAPI
from fastapi.openapi.utils import get_openapi
from fastapi.routing import APIRoute
from starlette.routing import BaseRoute, Match, Mount, get_route_path
from starlette.types import ASGIApp, Receive, Scope, Send

from authsite.head import answer_as_get


class RouteGate(BaseRoute):
    def __init__(self, routes: list[BaseRoute | APIRouter], *, dependency_overrides_provider=None,
                 around: Callable[[ASGIApp], ASGIApp] | None = None):
        self.router = APIRouter(dependency_overrides_provider=dependency_overrides_provider)
        self.patterns = []
        prefixes = set()
        for item in routes:
            if isinstance(item, APIRouter):
                self.router.include_router(item)
                owned = item.routes
            else:
                self.router.routes.append(item)
                owned = [item]
            for route in owned:
                self.patterns.append(route.path_regex)
                prefixes.add(_first_segment(route))
        self.prefixes = tuple(sorted(prefixes))
        self.app = around(self.router) if around else self.router  # e.g. errors answered for authsite only

    def matches(self, scope: Scope) -> tuple[Match, Scope]:
        if scope["type"] not in ("http", "websocket"):
            return Match.NONE, {}
        path = get_route_path(scope)
        if path.startswith(self.prefixes) and any(pattern.match(path) for pattern in self.patterns):
            # FULL even for a method the route does not take: authsite's router answers 405.
            return Match.FULL, {}
        return Match.NONE, {}

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "HEAD":
            # authsite has no HEAD route of its own: every GET route answers HEAD as GET.
            await answer_as_get(self.app, scope, receive, send)
            return
        await self.app(scope, receive, send)

    def url_path_for(self, name: str, /, **path_params):
        return self.router.url_path_for(name, **path_params)


def _first_segment(route: BaseRoute) -> str:
    """'/auth/login' -> '/auth', '/static' (a mount) -> '/static': a cheap first filter;
    the route's own pattern decides."""
    path = route.path if not isinstance(route, Mount) else route.path + "/"
    return "/" + path.lstrip("/").split("/", 1)[0]


def document_routes(app: FastAPI, routers: list[APIRouter]) -> None:
    """Show `routers`' routes in the app's OpenAPI schema although the gate serves them."""
    build_schema = app.openapi
    routes = [route for router in routers for route in router.routes if isinstance(route, APIRoute)]

    @cache
    def our_schema() -> dict:
        return get_openapi(title=app.title, version=app.version, routes=routes)

    def openapi() -> dict:
        schema = build_schema()
        ours = our_schema()
        schema.setdefault("paths", {}).update(ours.get("paths", {}))
        for kind, items in ours.get("components", {}).items():
            schema.setdefault("components", {}).setdefault(kind, {}).update(items)
        return schema

    app.openapi = openapi
