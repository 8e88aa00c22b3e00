"""Someone holding a stolen session tries to learn the password through the forms that ask for
it again, or races the owner's change: wrong `current_password`s count like failed logins and
are audited, and of password changes sent at once exactly one wins."""

import asyncio
import re
from dataclasses import replace
from datetime import timedelta

import httpx2
import pytest
from sqlmodel import col, select

from authsite import passwords
from authsite.events import Kind
from authsite.models import AuthEvent, User
from authsite.throttle import Limit
from support import PASSWORD, csrf_from, form_token, log_in

LIMIT = 3
WRONG_PASSWORD = "another long phrase 9"
NEW_PASSWORD = "new password 456"


@pytest.fixture
def settings(make_settings):
    return make_settings(login_max_failures=LIMIT, login_window_seconds=60, login_ip_max_failures=50)


@pytest.fixture
def alice(make_user):
    return make_user("alice", email="alice@example.com")


@pytest.fixture
def thief(client, alice):
    """A browser holding alice's session (stolen, or left open)."""
    assert log_in(client).status_code == 303
    return client


def change_password(browser, current: str, new: str = NEW_PASSWORD):
    data = {"current_password": current, "new_password": new, "new_password_confirm": new,
            "csrf_token": form_token(browser, "/account")}
    return browser.post("/account/password", data=data)


def change_email(browser, current: str, email: str = "thief@example.com"):
    data = {"first_name": "", "last_name": "", "email": email, "current_password": current,
            "csrf_token": form_token(browser, "/account")}
    return browser.post("/account/profile", data=data)


def failed_checks(run_db) -> list[AuthEvent]:
    async def read(db):
        statement = select(AuthEvent).where(AuthEvent.kind == Kind.LOGIN_FAILED).order_by(col(AuthEvent.id))
        return list((await db.exec(statement)).all())

    return run_db(read)


@pytest.mark.parametrize("form", [change_password, change_email], ids=["password", "email"])
def test_guessing_the_current_password_is_throttled_like_a_login(thief, form):
    for _ in range(LIMIT):
        assert form(thief, WRONG_PASSWORD).status_code == 400

    response = form(thief, PASSWORD)  # even the right one, now

    assert response.status_code == 429, response.text
    assert response.headers["retry-after"].isdigit()
    assert "Too many attempts" in response.text


def test_wrong_current_passwords_and_failed_logins_share_one_limit(app, client, thief):
    assert change_password(thief, WRONG_PASSWORD).status_code == 400
    for _ in range(LIMIT - 1):
        assert client.portal.call(_api_login, app, WRONG_PASSWORD) == 401

    assert client.portal.call(_api_login, app, PASSWORD) == 429


async def _api_login(app, password: str) -> int:
    """An API login from the same address as the test client's."""
    transport = httpx2.ASGITransport(app=app, client=("testclient", 50000))
    async with httpx2.AsyncClient(transport=transport, base_url="http://testserver") as browser:
        response = await browser.post("/api/auth/login", json={"username": "alice", "password": password})
        return response.status_code


def test_a_wrong_current_password_is_audited(thief, alice, run_db):
    change_email(thief, WRONG_PASSWORD)

    (event,) = failed_checks(run_db)
    assert event.user_id == alice.id
    assert event.detail["reason"] == "wrong_current_password"
    assert event.detail["via"] == "account"


def test_a_right_current_password_counts_nothing(thief, run_db):
    for _ in range(LIMIT + 1):
        assert change_email(thief, PASSWORD, email="alice@example.com").status_code == 303

    assert failed_checks(run_db) == []
    assert change_password(thief, PASSWORD).status_code == 303


# Racing changes


def test_of_password_changes_sent_at_once_exactly_one_wins(app, client, site, alice, run_db):
    browsers = 12
    site.limits = replace(site.limits, new_password=Limit(browsers, timedelta(minutes=15)))

    async def race():
        transport = httpx2.ASGITransport(app=app)
        clients = [httpx2.AsyncClient(transport=transport, base_url="http://testserver") for _ in range(browsers)]
        try:
            for browser in clients:  # each its own session, as on twelve devices
                token = csrf_from((await browser.get("/auth/login")).text)
                login = {"username": "alice", "password": PASSWORD, "csrf_token": token}
                assert (await browser.post("/auth/login", data=login)).status_code == 303
            forms = []
            for i, browser in enumerate(clients):
                token = csrf_from((await browser.get("/account")).text)
                new = f"{NEW_PASSWORD} {i}"
                forms.append({"current_password": PASSWORD, "new_password": new, "new_password_confirm": new,
                              "csrf_token": token})
            return await asyncio.gather(*(b.post("/account/password", data=f) for b, f in zip(clients, forms)))
        finally:
            for browser in clients:
                await browser.aclose()

    responses = client.portal.call(race)

    statuses = [response.status_code for response in responses]
    assert statuses.count(303) == 1, statuses
    winner = statuses.index(303)
    for i, response in enumerate(responses):
        if i != winner:
            assert response.status_code == 409, response.status_code
            assert re.search(r"changed (by another request|meanwhile)", response.text), response.text
    final_hash = run_db(lambda db: db.get(User, alice.id)).password_hash
    opens = [passwords.CONTEXT.verify(f"{NEW_PASSWORD} {i}", final_hash) for i in range(browsers)]
    assert opens == [i == winner for i in range(browsers)]
    assert not passwords.CONTEXT.verify(PASSWORD, final_hash)
