"""authsite's page routes behind one cheap check, so the host app's own routes do not pay for them.

Starlette tries an app's routes in order, and an included FastAPI router tries every route it
holds. With two dozen authsite pages ahead of the host's routes, each of the host's requests paid
about a tenth of its throughput only to learn "not one of these" (bench/RESULTS.md). The gate
settles that with a string prefix test; only paths under authsite's prefixes go on to the pages'
own path patterns, and only a path one of them matches is handed to authsite's router.

The JSON API stays an ordinary included router so that it appears in the host app's OpenAPI docs.
"""

from fastapi import APIRouter
from fastapi.routing import APIRoute
from starlette.routing import BaseRoute, Match, get_route_path
from starlette.types import Receive, Scope, Send


class RouteGate(BaseRoute):
    def __init__(self, routers: list[APIRouter], *, prefixes: tuple[str, ...], dependency_overrides_provider=None):
        self.prefixes = prefixes
        self.router = APIRouter(dependency_overrides_provider=dependency_overrides_provider)
        self.patterns = []
        for router in routers:
            for route in router.routes:
                if not isinstance(route, APIRoute) or not route.path.startswith(prefixes):
                    raise ValueError(f"{route!r} is not an APIRoute under {prefixes}")
                self.patterns.append(route.path_regex)
            self.router.include_router(router)

    def matches(self, scope: Scope) -> tuple[Match, Scope]:
        if scope["type"] != "http":
            return Match.NONE, {}
        path = get_route_path(scope)
        if path.startswith(self.prefixes) and any(pattern.match(path) for pattern in self.patterns):
            # FULL even for a method the route does not take: authsite's router answers 405.
            return Match.FULL, {}
        return Match.NONE, {}

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self.router(scope, receive, send)

    def url_path_for(self, name: str, /, **path_params):
        return self.router.url_path_for(name, **path_params)
