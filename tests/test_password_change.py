"""Changing the password on /account: it needs the current one; every other device is
logged out and this browser carries on with a brand-new session token."""

import re

import pytest
from fastapi.testclient import TestClient
from sqlmodel import select

from authsite.models import User
from support import PASSWORD, form_token, log_in

NEW_PASSWORD = "new password 456"
FIELD_WITH_ERROR = re.compile(r'<div class="field has-error">(.*?)</div>', re.DOTALL)


def another_browser(app, client) -> TestClient:
    """A second browser on the same running site: its own cookies, the app's own event loop."""
    other = TestClient(app, base_url="http://testserver", follow_redirects=False)
    other.portal = client.portal
    return other


@pytest.fixture
def other_device(app, client, user) -> TestClient:
    """alice, logged in on a second device."""
    other = another_browser(app, client)
    assert log_in(other).status_code == 303
    return other


@pytest.fixture
def stranger(app, client) -> TestClient:
    return another_browser(app, client)


def change_password(client, current=PASSWORD, new=NEW_PASSWORD, confirm=None, *, csrf=True):
    data = {
        "current_password": current,
        "new_password": new,
        "new_password_confirm": new if confirm is None else confirm,
    }
    if csrf:
        data["csrf_token"] = form_token(client, "/account")
    return client.post("/account/password", data=data)


def field_errors(html: str) -> dict[str, str]:
    """{field name: its message} for every field the page marks as wrong."""
    errors = {}
    for block in FIELD_WITH_ERROR.findall(html):
        name = re.search(r'name="([^"]+)"', block).group(1)
        errors[name] = re.search(r'class="field-error"[^>]*>([^<]*)<', block).group(1).strip()
    return errors


def is_logged_in(client) -> bool:
    return client.get("/api/me").status_code == 200


def stored_hash(run_db) -> str:
    async def read(db):
        return (await db.exec(select(User.password_hash).where(User.username == "alice"))).one()

    return run_db(read)


def test_a_password_change_redirects_to_the_account_page(logged_in_client):
    response = change_password(logged_in_client)

    assert response.status_code == 303
    assert response.headers["location"] == "/account"
    page = logged_in_client.get(response.headers["location"])
    assert "Password changed." in page.text


def test_after_a_change_the_new_password_logs_in_and_the_old_one_does_not(logged_in_client, stranger):
    assert change_password(logged_in_client).status_code == 303

    assert log_in(stranger, password=PASSWORD).status_code == 401
    assert log_in(stranger, password=NEW_PASSWORD).status_code == 303


def test_a_password_change_logs_out_every_other_device(logged_in_client, other_device):
    assert is_logged_in(other_device)

    assert change_password(logged_in_client).status_code == 303

    assert not is_logged_in(other_device)
    assert other_device.get("/account").status_code == 303


def test_the_browser_that_changed_it_stays_logged_in_with_a_new_token(logged_in_client, stranger):
    old_token = logged_in_client.cookies["session"]

    response = change_password(logged_in_client)

    assert response.status_code == 303
    new_token = logged_in_client.cookies["session"]
    assert new_token != old_token
    assert is_logged_in(logged_in_client)
    assert logged_in_client.get("/account").status_code == 200
    # Whoever copied the old cookie value is locked out with the old password.
    stranger.cookies.set("session", old_token)
    assert not is_logged_in(stranger)


def test_a_remembered_browser_stays_remembered_after_a_change(client, user, settings):
    assert log_in(client, remember=True).status_code == 303

    response = change_password(client)

    session_cookie = next(h for h in response.headers.get_list("set-cookie") if h.startswith("session="))
    assert f"Max-Age={settings.remember_seconds}" in session_cookie


def test_a_wrong_current_password_is_refused_and_changes_nothing(logged_in_client, other_device, stranger, run_db):
    before = stored_hash(run_db)
    token = logged_in_client.cookies["session"]

    response = change_password(logged_in_client, current="not my password at all")

    assert response.status_code == 400
    assert "current_password" in field_errors(response.text)
    assert stored_hash(run_db) == before
    assert logged_in_client.cookies["session"] == token
    assert is_logged_in(logged_in_client)
    assert is_logged_in(other_device)
    assert log_in(stranger, password=PASSWORD).status_code == 303


@pytest.mark.parametrize(
    ("new", "confirm", "field"),
    [
        (NEW_PASSWORD, "new password 457", "new_password_confirm"),
        ("short", "short", "new_password"),
        ("password1", "password1", "new_password"),
        ("", "", "new_password"),
    ],
    ids=["mismatched-confirmation", "too-short", "common", "empty"],
)
def test_a_bad_new_password_is_refused_with_a_message_on_its_field(
    logged_in_client, other_device, run_db, new, confirm, field
):
    before = stored_hash(run_db)

    response = change_password(logged_in_client, new=new, confirm=confirm)

    assert response.status_code == 400
    errors = field_errors(response.text)
    assert list(errors) == [field], errors
    assert errors[field]
    assert stored_hash(run_db) == before
    assert is_logged_in(other_device)


def test_a_change_without_a_csrf_token_is_refused(logged_in_client, other_device, run_db):
    before = stored_hash(run_db)

    response = change_password(logged_in_client, csrf=False)

    assert response.status_code == 403
    assert stored_hash(run_db) == before
    assert is_logged_in(other_device)
