"""Where people land after logging in or out, for a host app whose pages do not start at `/`:
AUTHSITE_LOGIN_REDIRECT and AUTHSITE_LOGOUT_REDIRECT, or AuthSite(login_redirect=, logout_redirect=)."""

import pytest
from fastapi import Depends, FastAPI
from fastapi.testclient import TestClient
from pydantic import ValidationError

from authsite import AuthSite
from support import PASSWORD, csrf_from, log_in


@pytest.fixture
def settings(make_settings):
    return make_settings(login_redirect="/dashboard", logout_redirect="/goodbye")


def test_a_login_without_next_lands_on_the_login_redirect(client, user):
    response = log_in(client)

    assert response.status_code == 303
    assert response.headers["location"] == "/dashboard"


def test_a_login_with_next_still_goes_there(client, user):
    response = log_in(client, next_path="/account")

    assert response.headers["location"] == "/account"


def test_a_logout_lands_on_the_logout_redirect(logged_in_client):
    token = csrf_from(logged_in_client.get("/auth/logout").text)

    response = logged_in_client.post("/auth/logout", data={"csrf_token": token})

    assert response.status_code == 303
    assert response.headers["location"] == "/goodbye"


def test_a_new_account_lands_on_the_login_redirect(client):
    token = csrf_from(client.get("/auth/register").text)

    response = client.post("/auth/register", data={
        "csrf_token": token, "username": "newcomer", "password": PASSWORD, "password_confirm": PASSWORD,
    })

    assert response.status_code == 303
    assert response.headers["location"] == "/dashboard"


def test_a_logged_in_visitor_of_the_login_page_is_sent_to_the_login_redirect(logged_in_client):
    response = logged_in_client.get("/auth/register")

    assert response.headers["location"] == "/dashboard"


def test_the_pages_home_links_go_to_the_login_redirect(make_user, client):
    make_user("bob")
    log_in(client, "bob")

    forbidden = client.get("/admin/users")
    missing = client.get("/no/such/page")

    assert forbidden.status_code == 403 and 'href="/dashboard"' in forbidden.text
    assert missing.status_code == 404 and 'href="/dashboard"' in missing.text
    assert 'href="/"' not in forbidden.text


@pytest.mark.parametrize("value", ["https://evil.example/", "//evil.example", "dashboard", "/\\evil", "/a\nb"])
def test_a_redirect_setting_must_be_a_path_on_this_site(make_settings, value):
    with pytest.raises(ValidationError) as caught:
        make_settings(login_redirect=value)

    assert "login_redirect" in str(caught.value)


def test_a_host_app_sets_the_landing_pages_in_code(make_settings, make_user):
    app = FastAPI()
    site = AuthSite(make_settings(), login_redirect="/app/home", logout_redirect="/app/bye")
    site.install(app)

    @app.get("/app/home")
    async def home(user=Depends(AuthSite.logged_in)):
        return {"hello": user.username}

    with TestClient(app, follow_redirects=False) as client:
        make_user_in(site, client)
        response = log_in(client)
        assert response.headers["location"] == "/app/home"
        token = csrf_from(client.get("/auth/logout").text)
        assert client.post("/auth/logout", data={"csrf_token": token}).headers["location"] == "/app/bye"


def make_user_in(site, client) -> None:
    from authsite import accounts

    async def create():
        async with site.database.sessionmaker() as db:
            await accounts.create_user(db=db, hasher=site.hasher, username="alice", password=PASSWORD,
                                       password_confirm=PASSWORD)

    client.portal.call(create)


def test_a_host_app_refuses_a_landing_page_off_the_site(make_settings):
    with pytest.raises(ValueError, match="login_redirect"):
        AuthSite(make_settings(), login_redirect="https://evil.example/")
