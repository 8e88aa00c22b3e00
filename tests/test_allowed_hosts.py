"""DNS rebinding: a page on the attacker's name that resolves to our address must get nothing from
us. The site answers only to the host names in AUTHSITE_ALLOWED_HOSTS (by default the base URL's
host and loopback); any other `Host` gets `400` before anything else runs."""

import asyncio

import pytest
from fastapi.testclient import TestClient
from starlette.routing import Route

from authsite import create_app
from support import statements_sent

REBOUND_HOST = "attacker.example"


@pytest.fixture
def default_hosts_client(make_settings):
    """A site with AUTHSITE_ALLOWED_HOSTS unset (base URL http://127.0.0.1:8000)."""
    with TestClient(create_app(make_settings(allowed_hosts="")), follow_redirects=False) as client:
        yield client


def test_a_request_for_a_foreign_host_gets_400_naming_the_setting(client):
    response = client.get("/auth/login", headers={"host": REBOUND_HOST})

    assert response.status_code == 400
    assert "AUTHSITE_ALLOWED_HOSTS" in response.text
    assert "set-cookie" not in response.headers


def test_a_rebound_page_cannot_read_a_logged_in_users_data(logged_in_client):
    response = logged_in_client.get("/api/me", headers={"host": f"{REBOUND_HOST}:8000"})

    assert response.status_code == 400
    assert "alice" not in response.text


def test_a_foreign_host_never_reaches_the_database(logged_in_client, site):
    with statements_sent(site) as sent:
        response = logged_in_client.get("/account", headers={"host": REBOUND_HOST})

    assert response.status_code == 400
    assert sent == []


def test_the_host_apps_own_routes_are_guarded_too(app, client):
    @app.get("/reports")
    async def reports() -> dict:
        return {"secret": "figures"}

    assert client.get("/reports", headers={"host": REBOUND_HOST}).status_code == 400


@pytest.mark.parametrize("host", ["127.0.0.1:8000", "localhost", "LOCALHOST:8000", "[::1]:8000", "localhost."])
def test_by_default_the_base_urls_host_and_loopback_are_served(default_hosts_client, host):
    assert default_hosts_client.get("/auth/login", headers={"host": host}).status_code == 200


@pytest.mark.parametrize("host", ["testserver", "example.com", "127.0.0.2", "[::2]:8000", "::1.evil"])
def test_by_default_other_hosts_are_refused(default_hosts_client, host):
    assert default_hosts_client.get("/auth/login", headers={"host": host}).status_code == 400


def test_the_listed_hosts_are_served_with_any_port_or_case(make_settings):
    settings = make_settings(allowed_hosts="example.com, www.example.com")
    with TestClient(create_app(settings), base_url="http://Example.COM:8443") as client:
        assert client.get("/auth/login").status_code == 200
        assert client.get("/auth/login", headers={"host": "www.example.com"}).status_code == 200
        assert client.get("/auth/login", headers={"host": "127.0.0.1"}).status_code == 400


def test_a_star_lets_any_host_in(make_settings):
    with TestClient(create_app(make_settings(allowed_hosts="*")), base_url="http://anything.example") as client:
        assert client.get("/auth/login").status_code == 200


@pytest.mark.parametrize("headers", [[], [(b"host", b"")]], ids=["no-host", "empty-host"])
def test_a_request_without_a_host_is_refused(make_settings, headers):
    app = create_app(make_settings(allowed_hosts="example.com"))
    reached = []
    app.router.routes.insert(0, Route("/", lambda request: reached.append(request)))
    sent = []

    async def send(message):
        sent.append(message)

    async def receive():
        return {"type": "http.request", "body": b""}

    scope = {"type": "http", "method": "GET", "path": "/", "headers": headers, "query_string": b""}
    asyncio.run(app(scope, receive, send))

    assert reached == []
    assert sent[0]["status"] == 400
