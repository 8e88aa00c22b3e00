"""authsite's pages sit behind one gate: the host app's own routes, even ones that look like
authsite's, are reached as if authsite were not there, and authsite's pages still work."""

import pytest
from fastapi import HTTPException, Request

from authsite import create_app, guards


@pytest.fixture
def app(settings):
    app = create_app(settings)

    @app.get("/accounts")
    async def accounts_listing() -> dict:
        return {"page": "the host's accounts"}

    @app.get("/auth/sso")
    async def single_sign_on() -> dict:
        return {"page": "the host's sso"}

    @app.get("/administration")
    async def administration() -> dict:
        return {"page": "the host's administration"}

    return app


@pytest.mark.parametrize("path", ["/accounts", "/auth/sso", "/administration"])
def test_the_host_apps_routes_next_to_authsites_prefixes_are_reached(client, path):
    response = client.get(path)
    assert response.status_code == 200
    assert response.json()["page"].startswith("the host's")


def test_authsites_pages_are_served(client):
    assert client.get("/auth/login").status_code == 200


def test_an_unknown_path_under_authsites_prefix_is_a_404(client):
    assert client.get("/auth/nowhere").status_code == 404


def test_a_method_a_page_does_not_take_is_a_405(client):
    assert client.put("/auth/login").status_code == 405


def test_dependency_overrides_of_the_host_app_apply_to_authsites_pages(app, client):
    async def nobody_gets_in(request: Request):
        raise HTTPException(418, "overridden")

    app.dependency_overrides[guards.already_logged_in] = nobody_gets_in
    assert client.get("/auth/login").status_code == 418


def test_authsites_pages_can_be_named_in_url_for(app):
    assert app.url_path_for("login_page") == "/auth/login"


def test_the_json_api_is_in_the_host_apps_openapi_docs(app):
    paths = app.openapi()["paths"]
    assert {"/api/auth/login", "/api/auth/logout", "/api/me"} <= set(paths)


def test_dependency_overrides_of_the_host_app_apply_to_the_json_api(app, client):
    from authsite.web.deps import same_origin_api_call

    async def refuse(request: Request):
        raise HTTPException(418, "overridden")

    app.dependency_overrides[same_origin_api_call] = refuse
    assert client.post("/api/auth/login", json={}).status_code == 418
