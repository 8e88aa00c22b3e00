"""Security headers on pages, no caching of private responses, and the session cookie's flags."""

import pytest
from fastapi.testclient import TestClient

from authsite import accounts, create_app
from support import PASSWORD, form_token, log_in


def csp_directives(response) -> dict[str, set[str]]:
    policy = response.headers["content-security-policy"]
    directives = {}
    for part in policy.split(";"):
        name, *values = part.split()
        directives[name.lower()] = set(values)
    return directives


def session_set_cookie(response, name="session") -> str:
    headers = [h for h in response.headers.get_list("set-cookie") if h.startswith(f"{name}=")]
    assert len(headers) == 1, response.headers.get_list("set-cookie")
    return headers[0]


def cookie_attributes(set_cookie: str) -> dict[str, str]:
    _, *attributes = set_cookie.split(";")
    parsed = {}
    for attribute in attributes:
        key, _, value = attribute.strip().partition("=")
        parsed[key.lower()] = value
    return parsed


# Pages


@pytest.mark.parametrize("path", ["/", "/auth/login", "/auth/logout"])
def test_pages_forbid_sniffing_and_set_a_referrer_policy(client, path):
    response = client.get(path)

    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["referrer-policy"]


@pytest.mark.parametrize("path", ["/", "/auth/login"])
def test_pages_allow_only_same_origin_resources_and_no_framing(client, path):
    directives = csp_directives(client.get(path))

    assert directives["default-src"] == {"'self'"}
    assert directives["frame-ancestors"] == {"'none'"}


def test_error_pages_carry_the_security_headers_too(client):
    response = client.get("/no-such-page")

    assert response.status_code == 404
    assert response.headers["x-content-type-options"] == "nosniff"
    assert "frame-ancestors 'none'" in response.headers["content-security-policy"]


# Caching


@pytest.mark.parametrize("path", ["/", "/auth/logout", "/api/me"])
def test_authenticated_responses_are_never_stored(logged_in_client, path):
    response = logged_in_client.get(path)

    assert response.status_code == 200
    assert response.headers["cache-control"] == "no-store"


def test_the_login_response_that_sets_the_cookie_is_never_stored(client, user):
    response = log_in(client)

    assert "session" in response.cookies
    assert response.headers["cache-control"] == "no-store"


def test_the_api_login_response_that_sets_the_cookie_is_never_stored(client, user):
    response = client.post("/api/auth/login", json={"username": "alice", "password": PASSWORD})

    assert "session" in response.cookies
    assert response.headers["cache-control"] == "no-store"


def test_the_logout_response_that_clears_the_cookie_is_never_stored(logged_in_client):
    response = logged_in_client.post("/auth/logout", data={"csrf_token": form_token(logged_in_client, "/auth/logout")})

    assert response.headers["cache-control"] == "no-store"


# The session cookie


def test_session_cookie_is_httponly_lax_for_the_whole_site_and_host_only(client, user):
    attributes = cookie_attributes(session_set_cookie(log_in(client)))

    assert "httponly" in attributes
    assert attributes["samesite"].lower() == "lax"
    assert attributes["path"] == "/"
    assert "domain" not in attributes


def test_session_cookie_is_not_secure_over_plain_http_by_default(client, user):
    attributes = cookie_attributes(session_set_cookie(log_in(client)))

    assert "secure" not in attributes


def test_each_login_sets_a_new_long_random_session_token(client, user):
    log_in(client)
    first = client.cookies["session"]
    client.post("/api/auth/logout", json={})
    log_in(client)
    second = client.cookies["session"]

    assert first != second
    # 128 bits at least: 22 characters of URL-safe base64.
    assert len(first) >= 22


@pytest.fixture
def secure_client(make_settings):
    app = create_app(make_settings(cookie_secure="true"))
    with TestClient(app, base_url="https://testserver", follow_redirects=False) as client:
        site = app.state.authsite

        async def create_alice():
            async with site.database.sessionmaker() as db:
                await accounts.create_user(db=db, hasher=site.hasher, username="alice", password=PASSWORD)

        client.portal.call(create_alice)
        yield client


def test_secure_session_cookie_is_named_host_session_and_secure(secure_client):
    set_cookie = session_set_cookie(log_in(secure_client), "__Host-session")
    attributes = cookie_attributes(set_cookie)

    assert "secure" in attributes
    assert "httponly" in attributes
    assert attributes["path"] == "/"
    assert "domain" not in attributes


def test_secure_session_cookie_opens_the_account(secure_client):
    log_in(secure_client)

    assert secure_client.get("/api/me").json()["username"] == "alice"


def test_https_responses_tell_the_browser_to_stay_on_https(secure_client):
    hsts = secure_client.get("/auth/login").headers["strict-transport-security"]

    assert int(hsts.split("max-age=")[1].split(";")[0]) >= 31536000


def test_plain_http_responses_send_no_hsts(client):
    # Over http the header means nothing and would only confuse a local setup.
    assert "strict-transport-security" not in client.get("/auth/login").headers


@pytest.mark.parametrize("path", ["/auth/login", "/api/me", "/healthz"])
def test_no_other_site_is_allowed_to_read_our_responses(client, path):
    response = client.get(path, headers={"origin": "https://evil.example"})

    assert "access-control-allow-origin" not in response.headers
    assert "access-control-allow-credentials" not in response.headers


@pytest.mark.parametrize("path", ["/", "/account"])
def test_every_authenticated_page_offers_a_logout_button(logged_in_client, path):
    page = logged_in_client.get(path).text

    assert 'action="/auth/logout"' in page
