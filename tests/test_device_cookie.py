"""Behind a proxy that is not trusted every client has the proxy's address, so a stranger's
guesses would lock the owner out. A browser that has signed in to an account before carries a
signed device cookie for it, and keeps logging in to that account with the right password while
strangers are throttled (OWASP's device-cookie defence). The cookie's own guesses are limited."""

import pytest
from fastapi.testclient import TestClient

from support import PASSWORD, log_in

LIMIT = 3
IP_LIMIT = 5
WRONG_PASSWORD = "another long phrase 9"


@pytest.fixture
def settings(make_settings):
    return make_settings(login_max_failures=LIMIT, login_window_seconds=60, login_ip_max_failures=IP_LIMIT)


@pytest.fixture
def alice(make_user):
    return make_user("alice")


def browser(app, client) -> TestClient:
    """Another browser behind the same proxy: the same address, its own cookies."""
    other = TestClient(app, base_url="http://testserver", follow_redirects=False)
    other.portal = client.portal
    return other


def api_login(who: TestClient, username="alice", password=PASSWORD):
    return who.post("/api/auth/login", json={"username": username, "password": password})


def device_cookie(who: TestClient) -> str | None:
    return who.cookies.get("device")


@pytest.fixture
def owner(app, client, alice) -> TestClient:
    """alice's own browser: signed in once, then logged out."""
    assert log_in(client).status_code == 303
    assert device_cookie(client)
    client.post("/api/auth/logout", json={})
    assert client.get("/api/me").status_code == 401
    return client


def lock_everyone_out(app, client) -> None:
    stranger = browser(app, client)
    for _ in range(LIMIT):
        assert api_login(stranger, password=WRONG_PASSWORD).status_code == 401
    for i in range(IP_LIMIT - LIMIT):
        assert api_login(stranger, f"someone{i}", WRONG_PASSWORD).status_code == 401
    assert api_login(stranger).status_code == 429


def test_a_login_leaves_a_signed_httponly_device_cookie(client, alice):
    response = log_in(client)

    cookie = next(value for value in response.headers.get_list("set-cookie") if value.startswith("device="))
    assert "HttpOnly" in cookie and "SameSite=lax" in cookie and "Max-Age=" in cookie
    assert str(alice.id) in device_cookie(client)


def test_the_owners_browser_still_logs_in_while_strangers_behind_the_same_address_are_throttled(
    app, client, owner
):
    lock_everyone_out(app, client)

    assert api_login(owner).status_code == 200
    assert api_login(browser(app, client)).status_code == 429  # a browser without the cookie: refused


def test_the_form_login_honours_the_device_cookie_too(app, client, owner):
    lock_everyone_out(app, client)

    assert log_in(owner).status_code == 303


def test_a_device_cookie_for_one_account_does_not_open_the_limits_of_another(app, client, owner, make_user):
    make_user("bob")
    stranger = browser(app, client)
    for _ in range(LIMIT):
        api_login(stranger, "bob", WRONG_PASSWORD)

    assert api_login(owner, "bob").status_code == 429


def test_a_forged_device_cookie_counts_for_nothing(app, client, alice):
    lock_everyone_out(app, client)
    forger = browser(app, client)
    forger.cookies.set("device", f"{alice.id}:aaaaaaaaaaaaaaaaaaaaaa:bbbbbbbbbbbbbbbbbbbbbb")

    assert api_login(forger).status_code == 429


def test_guesses_with_a_stolen_device_cookie_are_limited_on_their_own(app, client, owner):
    thief = browser(app, client)
    thief.cookies.set("device", device_cookie(owner))
    for _ in range(LIMIT):
        assert api_login(thief, password=WRONG_PASSWORD).status_code == 401

    assert api_login(thief).status_code == 429
    # The cookie's own bucket is spent; the owner, now also held back, waits like anyone.
    assert api_login(owner).status_code == 429
