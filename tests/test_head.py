"""HEAD on every GET route answers like GET without a body (uptime monitors and link checkers
send HEAD), for authsite's routes and the host app's own; a refusal sets no cookie."""

import re

import pytest
from fastapi.testclient import TestClient
from starlette.routing import Mount

from authsite import create_app
from support import log_in

# Headers that differ between any two requests, whatever the method.
PER_REQUEST = {"date"}
PATH_PARAM = re.compile(r"{([^}:]+)(:[^}]*)?}")


def get_paths(routes, ids: dict[str, str]) -> list[str]:
    """Every GET route's path, reached through the route gate too, its parameters filled in."""
    paths = []
    for route in routes:
        # The route gate's router, and FastAPI's included routers (held by reference).
        router = getattr(route, "router", None) or getattr(route, "original_router", None)
        if router is not None and not isinstance(route, Mount):
            paths += get_paths(router.routes, ids)
        elif "GET" in (getattr(route, "methods", None) or ()):
            paths.append(PATH_PARAM.sub(lambda m: ids.get(m.group(1), "x" * 43), route.path))
    return sorted(set(paths))


def comparable(response) -> dict:
    """Status and headers, with cookie values (a fresh CSRF cookie per request) left out."""
    headers = {name: value for name, value in response.headers.items() if name not in PER_REQUEST | {"set-cookie"}}
    if headers.get("content-encoding") == "gzip":
        # Every render signs its form with a fresh nonce, so a gzipped page's size varies by a byte or two.
        del headers["content-length"]
    cookies = sorted(line.split("=", 1)[0] + ";" + line.partition(";")[2] for line in response.headers.get_list("set-cookie"))
    return {"status": response.status_code, "headers": headers, "cookies": [re.sub(r"expires=[^;]*;", "", c) for c in cookies]}


@pytest.fixture
def paths(app, make_user):
    root = make_user("root", scopes=("authenticated", "admin", "super"))
    return get_paths(app.router.routes, {"user_id": str(root.id)})


def test_the_standalone_site_has_get_routes_to_check(paths):
    assert {"/", "/auth/login", "/account", "/admin/users", "/api/me", "/healthz"} <= set(paths)


@pytest.mark.parametrize("who", ["anonymous", "super"])
def test_head_answers_every_get_route_like_get_without_a_body(client, paths, who):
    if who == "super":
        assert log_in(client, "root").status_code == 303
    differences = {}
    before = dict(client.cookies)
    for path in paths:
        got = client.get(path)
        client.cookies = before  # the HEAD comes from the same browser state as the GET
        head = client.head(path)
        client.cookies = before
        if head.content != b"" or comparable(head) != comparable(got):
            differences[path] = (comparable(got), comparable(head), head.content[:60])

    assert differences == {}


def test_head_on_a_static_file_answers_like_get(client):
    got, head = client.get("/static/authsite.css"), client.head("/static/authsite.css")

    assert got.status_code == head.status_code == 200
    assert head.content == b""
    assert head.headers["content-length"] == got.headers["content-length"]


def test_a_method_a_page_does_not_take_is_405_and_sets_no_cookie(client):
    response = client.put("/auth/login")

    assert response.status_code == 405
    assert "set-cookie" not in response.headers


def test_head_on_an_unknown_path_is_a_404_without_a_body(client):
    response = client.head("/auth/nowhere")

    assert response.status_code == 404
    assert response.content == b""


def test_the_host_apps_get_routes_answer_head_too(settings):
    app = create_app(settings)

    @app.get("/dashboard")
    async def dashboard() -> dict:
        return {"hello": "world"}

    with TestClient(app, base_url="http://testserver") as client:
        got, head = client.get("/dashboard"), client.head("/dashboard")

    assert got.status_code == head.status_code == 200
    assert head.content == b""
    assert head.headers["content-length"] == got.headers["content-length"]


def test_a_host_apps_own_head_route_keeps_its_answer(settings):
    app = create_app(settings)

    @app.get("/probe")
    async def probe_get() -> dict:
        return {"method": "GET"}

    @app.head("/probe")
    async def probe_head():
        from starlette.responses import Response

        return Response(status_code=204, headers={"x-probe": "head"})

    with TestClient(app, base_url="http://testserver") as client:
        head = client.head("/probe")

    assert head.status_code == 204
    assert head.headers["x-probe"] == "head"
