"""The login and logout pages, as a browser and a password manager see them."""

import re

import pytest
from sqlmodel import select

from authsite.models import User
from support import FormPage, CSRF_FIELD, PASSWORD, form_token, log_in


def without_csrf_tokens(html: str) -> str:
    return CSRF_FIELD.sub('name="csrf_token" value=""', html)


def post_login(client, **fields):
    data = {"csrf_token": form_token(client), **fields}
    return client.post("/auth/login", data=data)


def deactivate(run_db, username):
    async def update(db):
        user = (await db.exec(select(User).where(User.username == username))).one()
        user.is_active = False
        db.add(user)
        await db.commit()

    run_db(update)


# GET /auth/login


def test_login_form_offers_username_and_password_as_password_managers_expect(client):
    form = FormPage(client.get("/auth/login").text)

    assert form.inputs["username"]["autocomplete"] == "username"
    assert form.inputs["password"]["autocomplete"] == "current-password"
    assert form.inputs["password"]["type"] == "password"


def test_login_form_has_remember_next_and_csrf_fields(client):
    form = FormPage(client.get("/auth/login?next=/reports").text)

    assert form.inputs["remember"]["type"] == "checkbox"
    assert form.inputs["next"] == {"type": "hidden", "name": "next", "value": "/reports"}
    assert form.inputs["csrf_token"]["type"] == "hidden"
    assert form.inputs["csrf_token"]["value"]


def test_every_visible_login_input_has_a_label(client):
    form = FormPage(client.get("/auth/login").text)

    for name in ("username", "password", "remember"):
        assert form.inputs[name]["id"] in form.label_targets, name


def test_remember_me_stays_ticked_after_a_failed_login(client, user):
    ticked = post_login(client, username="alice", password="not the password", remember="on")
    unticked = post_login(client, username="alice", password="not the password")
    missing_password = post_login(client, username="alice", password="", remember="on")

    assert ticked.status_code == 401
    assert "checked" in FormPage(ticked.text).inputs["remember"]
    assert "checked" not in FormPage(unticked.text).inputs["remember"]
    assert "checked" in FormPage(missing_password.text).inputs["remember"]


# POST /auth/login: success


def test_login_redirects_to_next_keeping_its_query(client, user):
    response = log_in(client, next_path="/reports?year=2024&q=x")

    assert response.status_code == 303
    assert response.headers["location"] == "/reports?year=2024&q=x"


def test_login_without_next_redirects_home(client, user):
    response = log_in(client)

    assert response.status_code == 303
    assert response.headers["location"] == "/"


def test_login_sets_a_session_cookie_that_opens_the_account(client, user):
    response = log_in(client)

    assert "session" in response.cookies
    assert client.get("/api/me").json()["username"] == "alice"


def test_remember_me_makes_the_cookie_outlive_the_browser(client, user, settings):
    response = log_in(client, remember=True)

    session_cookie = next(h for h in response.headers.get_list("set-cookie") if h.startswith("session="))
    assert f"max-age={settings.remember_seconds}" in session_cookie.lower()


def test_without_remember_me_the_cookie_ends_with_the_browser(client, user):
    response = log_in(client)

    session_cookie = next(h for h in response.headers.get_list("set-cookie") if h.startswith("session="))
    assert "max-age" not in session_cookie.lower()
    assert "expires" not in session_cookie.lower()


@pytest.mark.parametrize("typed", ["ALICE", "Alice", "\uff21\uff2c\uff29\uff23\uff25"], ids=["upper", "title", "fullwidth"])
def test_usernames_match_case_insensitively_and_after_nfkc(client, user, typed):
    response = log_in(client, username=typed)

    assert response.status_code == 303
    assert client.get("/api/me").json()["username"] == "alice"


def test_home_page_shows_who_is_logged_in(logged_in_client):
    page = logged_in_client.get("/").text

    assert "alice" in page
    assert "not logged in" not in page


def test_home_page_says_when_nobody_is_logged_in(client, user):
    page = client.get("/").text

    assert "alice" not in page
    assert "not logged in" in page


# POST /auth/login: failure


def test_wrong_password_shows_the_form_again_with_401(client, user):
    response = post_login(client, username="alice", password="wrong password here")

    assert response.status_code == 401
    assert 'name="password"' in response.text
    assert "session" not in response.cookies
    assert client.get("/api/me").status_code == 401


def test_failed_login_does_not_echo_the_password(client, user):
    response = post_login(client, username="alice", password="my secret guess")

    assert "my secret guess" not in response.text


def test_unknown_user_wrong_password_and_inactive_user_get_the_same_page(client, make_user, run_db):
    # The same username every time, so the only difference could be the reason.
    unknown = post_login(client, username="alice", password=PASSWORD)
    make_user()
    wrong_password = post_login(client, username="alice", password="not the password")
    deactivate(run_db, "alice")
    inactive = post_login(client, username="alice", password=PASSWORD)

    assert unknown.status_code == wrong_password.status_code == inactive.status_code == 401
    assert without_csrf_tokens(unknown.text) == without_csrf_tokens(wrong_password.text)
    assert without_csrf_tokens(unknown.text) == without_csrf_tokens(inactive.text)


def test_failed_login_shows_one_generic_message(client, user):
    page = post_login(client, username="alice", password="not the password").text

    alerts = re.findall(r'role="alert"[^>]*>([^<]+)<', page)
    assert len(alerts) == 1
    assert "password" in alerts[0].lower()


@pytest.mark.parametrize(
    ("fields", "invalid"),
    [
        ({"username": "", "password": PASSWORD}, {"username"}),
        ({"username": "alice", "password": ""}, {"password"}),
        ({"username": "", "password": ""}, {"username", "password"}),
        ({}, {"username", "password"}),
    ],
    ids=["no-username", "no-password", "both-empty", "both-missing"],
)
def test_empty_fields_get_400_with_a_message_for_each(client, user, fields, invalid):
    response = post_login(client, **fields)

    assert response.status_code == 400
    form = FormPage(response.text)
    for name in ("username", "password"):
        message = form.error_for(name)
        if name in invalid:
            assert message, f"{name} has no message"
        else:
            assert message is None, f"{name} should not be marked invalid"
    assert client.get("/api/me").status_code == 401


def test_whitespace_only_username_counts_as_empty(client, user):
    response = post_login(client, username="   ", password=PASSWORD)

    assert response.status_code == 400
    assert FormPage(response.text).error_for("username")


# Logout


def test_logout_page_shows_a_button_and_does_not_log_out(logged_in_client):
    page = logged_in_client.get("/auth/logout")

    assert page.status_code == 200
    form = FormPage(page.text)
    assert form.buttons
    assert form.inputs["csrf_token"]["value"]
    assert logged_in_client.get("/api/me").status_code == 200


def cancel_link(page) -> str:
    [href] = re.findall(r'<a [^>]*href="([^"]*)"[^>]*>Cancel</a>', page.text)
    return href


@pytest.mark.parametrize(
    ("query", "referer", "back_to"),
    [
        ("", None, "/account"),
        ("?next=/admin/users%3Fq%3Dbob", None, "/admin/users?q=bob"),
        ("", "http://testserver/account/security", "/account/security"),
        ("?next=//evil.example/x", None, "/account"),
        ("?next=https://evil.example/x", None, "/account"),
        ("", "https://evil.example/account", "/account"),
        ("", "http://testserver/auth/logout", "/account"),
    ],
    ids=["nothing-known", "next", "referer", "next-other-host", "next-with-scheme", "referer-other-site",
         "referer-itself"],
)
def test_the_logout_page_has_a_cancel_back_to_a_safe_local_page(logged_in_client, query, referer, back_to):
    headers = {"referer": referer} if referer else {}
    page = logged_in_client.get(f"/auth/logout{query}", headers=headers)

    assert page.status_code == 200
    assert cancel_link(page) == back_to.replace("&", "&amp;")
    assert logged_in_client.get("/api/me").status_code == 200


def test_logout_redirects_home_and_ends_the_session(logged_in_client):
    response = logged_in_client.post("/auth/logout", data={"csrf_token": form_token(logged_in_client, "/auth/logout")})

    assert response.status_code == 303
    assert response.headers["location"] == "/"
    assert logged_in_client.get("/api/me").status_code == 401


def test_logout_clears_the_session_cookie(logged_in_client):
    response = logged_in_client.post("/auth/logout", data={"csrf_token": form_token(logged_in_client, "/auth/logout")})

    cleared = [h for h in response.headers.get_list("set-cookie") if h.startswith("session=")]
    assert len(cleared) == 1
    assert 'session=""' in cleared[0] or "session=;" in cleared[0]
    assert "max-age=0" in cleared[0].lower()


def test_logout_invalidates_the_old_cookie(logged_in_client):
    old_token = logged_in_client.cookies["session"]
    logged_in_client.post("/auth/logout", data={"csrf_token": form_token(logged_in_client, "/auth/logout")})

    logged_in_client.cookies.set("session", old_token)

    assert logged_in_client.get("/api/me").status_code == 401


def test_logout_when_not_logged_in_still_goes_home(client):
    response = client.post("/auth/logout", data={"csrf_token": form_token(client)})

    assert response.status_code == 303
    assert response.headers["location"] == "/"
