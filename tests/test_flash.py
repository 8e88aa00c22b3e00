"""Flash messages: the page after a redirect says what just happened, once, and a
reload or a forged cookie never puts words on the page."""

import re
from urllib.parse import urlsplit

import pytest
from fastapi.testclient import TestClient

from authsite import accounts, create_app, flash
from support import PASSWORD, csrf_from, log_in

NOTICE = re.compile(r'<p class="notice" role="status">([^<]*)</p>')


def notice_on(response) -> str | None:
    assert response.status_code == 200, response.status_code
    match = NOTICE.search(response.text)
    return match.group(1) if match else None


def flash_set_cookie(response, name="flash") -> str:
    [header] = [h for h in response.headers.get_list("set-cookie") if h.startswith(f"{name}=")]
    return header


def follow(client: TestClient, response):
    assert response.status_code == 303, response.text[:300]
    return client.get(response.headers["location"])


def post_form(client: TestClient, page: str, action: str, **fields):
    token = csrf_from(client.get(page).text)
    return client.post(action, data={"csrf_token": token, **fields})


@pytest.fixture
def second_browser(app, client, logged_in_client) -> TestClient:
    """alice, logged in on another browser of the same running site."""
    other = TestClient(app, base_url="http://testserver", follow_redirects=False)
    other.portal = client.portal
    assert log_in(other).status_code == 303
    return other


def other_session_id(client: TestClient) -> str:
    page = client.get("/account").text
    ids = re.findall(r'<tr>.*?action="/account/sessions/(\d+)/revoke"', page, re.S)
    assert len(ids) == 1, ids
    return ids[0]


# Shown once


def test_after_logout_the_home_page_says_you_are_logged_out(logged_in_client):
    response = post_form(logged_in_client, "/", "/auth/logout")

    assert response.headers["location"] == "/"
    assert notice_on(follow(logged_in_client, response)) == "You are logged out."


def test_a_reload_does_not_show_the_message_again(logged_in_client):
    follow(logged_in_client, post_form(logged_in_client, "/", "/auth/logout"))

    assert notice_on(logged_in_client.get("/")) is None


def test_the_page_that_shows_the_message_deletes_the_cookie(logged_in_client):
    page = follow(logged_in_client, post_form(logged_in_client, "/", "/auth/logout"))

    deleted = flash_set_cookie(page)
    assert "max-age=0" in deleted.lower()
    assert "flash" not in logged_in_client.cookies


def test_the_message_waits_through_a_redirect_for_the_next_page(logged_in_client):
    """Revoking this browser's own session lands on /account, which sends it to log in:
    the login page is the first page rendered, so it shows the message."""
    page = logged_in_client.get("/account").text
    own = re.search(r'<tr class="current">.*?action="/account/sessions/(\d+)/revoke"', page, re.S).group(1)
    response = post_form(logged_in_client, "/account", f"/account/sessions/{own}/revoke")

    to_login = follow(logged_in_client, response)
    assert to_login.status_code == 303
    assert notice_on(logged_in_client.get(to_login.headers["location"])) == "You are logged out."


# The cookie


def test_the_cookie_is_httponly_lax_sitewide_short_lived_and_holds_only_a_key(logged_in_client):
    response = post_form(logged_in_client, "/", "/auth/logout")

    cookie = flash_set_cookie(response)
    attributes = {part.strip().lower() for part in cookie.split(";")[1:]}
    assert cookie.startswith("flash=logged_out;")
    assert {"httponly", "samesite=lax", "path=/", f"max-age={flash.FLASH_MAX_AGE_SECONDS}"} <= attributes
    assert flash.FLASH_MAX_AGE_SECONDS <= 60
    assert not any(a.startswith("domain") for a in attributes)
    assert "secure" not in attributes


def test_over_https_the_cookie_is_secure_and_host_prefixed(make_settings):
    app = create_app(make_settings(cookie_secure="auto"))
    with TestClient(app, base_url="https://testserver", follow_redirects=False) as browser:
        make_user_in(browser, app)
        assert log_in(browser).status_code == 303
        response = post_form(browser, "/", "/auth/logout")

        cookie = flash_set_cookie(response, name="__Host-flash")
        assert "secure" in cookie.lower()
        assert notice_on(follow(browser, response)) == "You are logged out."


def make_user_in(browser: TestClient, app) -> None:
    site = app.state.authsite

    async def create():
        async with site.database.sessionmaker() as db:
            await accounts.create_user(db=db, hasher=site.hasher, username="alice", password=PASSWORD)

    browser.portal.call(create)


# Forged or stale cookies


@pytest.mark.parametrize("value", ["no_such_key", "Your account is locked. Call 555-0100", "<script>x</script>", ""])
def test_an_unknown_key_shows_nothing_and_is_deleted(client, value):
    client.cookies.set("flash", value)

    page = client.get("/auth/login")

    assert notice_on(page) is None
    assert "555-0100" not in page.text and "<script>x" not in page.text
    assert "max-age=0" in flash_set_cookie(page).lower()


def test_a_page_without_a_waiting_message_sets_no_flash_cookie(client):
    page = client.get("/auth/login")

    assert not [h for h in page.headers.get_list("set-cookie") if h.startswith("flash=")]


def test_only_known_keys_can_be_flashed():
    with pytest.raises(ValueError):
        flash.flash(None, "Anything you like", secure=False)


@pytest.mark.parametrize("old_url", ["/account?done=password", "/account?done=<b>x</b>"])
def test_the_old_done_query_parameter_is_harmless_and_shows_nothing(logged_in_client, old_url):
    assert notice_on(logged_in_client.get(old_url)) is None


def test_the_old_reset_done_query_parameter_is_harmless_and_shows_nothing(client):
    assert notice_on(client.get("/auth/login?reset=done")) is None


# Each action says what it did


def test_a_password_change_says_password_changed(logged_in_client):
    response = post_form(
        logged_in_client, "/account", "/account/password",
        current_password=PASSWORD, new_password="a brand new secret 42", new_password_confirm="a brand new secret 42",
    )

    assert response.headers["location"] == "/account"
    assert notice_on(follow(logged_in_client, response)).startswith("Password changed.")


def test_saving_the_profile_says_the_details_were_saved(logged_in_client):
    response = post_form(logged_in_client, "/account", "/account/profile", first_name="Alice", last_name="Liddell")

    assert notice_on(follow(logged_in_client, response)) == "Your details have been saved."


def test_revoking_another_session_says_it_has_ended(logged_in_client, second_browser):
    session_id = other_session_id(logged_in_client)

    response = post_form(logged_in_client, "/account", f"/account/sessions/{session_id}/revoke")

    assert notice_on(follow(logged_in_client, response)) == "That session has ended."


def test_signing_out_everywhere_else_says_so(logged_in_client, second_browser):
    response = post_form(logged_in_client, "/account", "/account/sessions/revoke-others")

    assert notice_on(follow(logged_in_client, response)) == "Every other session has ended."


def test_an_admin_saving_a_user_is_told_the_changes_were_saved(app, client, make_user):
    make_user("ada", scopes=("authenticated", "admin"))
    alice = make_user("alice")
    assert log_in(client, "ada").status_code == 303

    response = post_form(client, f"/admin/users/{alice.id}", f"/admin/users/{alice.id}", scopes="authenticated", active="true")

    assert response.headers["location"] == f"/admin/users/{alice.id}"
    assert notice_on(follow(client, response)) == "Changes saved."


def test_a_finished_password_reset_is_announced_on_the_login_page(client, run_cli, user):
    link = run_cli("reset-link", "alice").stdout.strip()
    path = urlsplit(link).path

    response = post_form(client, path, path, password="a brand new secret 42", password_confirm="a brand new secret 42")

    assert response.headers["location"] == "/auth/login"
    assert notice_on(follow(client, response)) == "Your password has been reset. Log in with the new one."
