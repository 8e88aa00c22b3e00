"""Logging in with an email address in the `username` field (issue 15, item 4): any case, the
same answers, the same password work and the same limits as a username."""

import pytest

from authsite import passwords
from support import PASSWORD, CountingContext, log_in
from test_enumeration import WRONG_PASSWORD, fresh_browser, seen_by_client

ALICE_EMAIL = "Alice.Liddell@Example.com"


@pytest.fixture
def alice(make_user):
    return make_user("alice", email=ALICE_EMAIL)


@pytest.fixture
def counting(monkeypatch) -> CountingContext:
    context = CountingContext(passwords.CONTEXT)
    monkeypatch.setattr(passwords, "CONTEXT", context)
    return context


def is_logged_in_as(client, username: str) -> bool:
    me = client.get("/api/me")
    return me.status_code == 200 and me.json()["username"] == username


@pytest.mark.parametrize("typed", [ALICE_EMAIL, ALICE_EMAIL.lower(), ALICE_EMAIL.upper()])
def test_the_email_in_any_case_logs_in(client, alice, typed):
    response = log_in(client, typed)

    assert response.status_code == 303
    assert is_logged_in_as(client, "alice")


def test_the_api_takes_the_email_too(client, alice):
    response = client.post("/api/auth/login", json={"username": ALICE_EMAIL, "password": PASSWORD})

    assert response.status_code == 200
    assert response.json()["user"]["username"] == "alice"


def test_the_login_field_says_username_or_email(client):
    page = client.get("/auth/login").text

    assert '<label for="username">Username or email</label>' in page


def test_an_unknown_email_looks_like_a_wrong_password_and_an_inactive_account(app, client, make_user, run_db):
    from test_enumeration import deactivate

    unknown = log_in(fresh_browser(app, client), ALICE_EMAIL)
    make_user("alice", email=ALICE_EMAIL)
    wrong = log_in(fresh_browser(app, client), ALICE_EMAIL, WRONG_PASSWORD)
    deactivate(run_db)
    inactive = log_in(fresh_browser(app, client), ALICE_EMAIL)

    assert unknown.status_code == 401
    assert seen_by_client(unknown) == seen_by_client(wrong) == seen_by_client(inactive)


@pytest.mark.parametrize("typed", ["nobody@example.com", "not an @ address", ALICE_EMAIL])
def test_every_email_login_costs_exactly_one_password_verify(client, alice, counting, typed):
    counting.verifies = 0

    log_in(client, typed, WRONG_PASSWORD)

    assert counting.verifies == 1


def test_wrong_passwords_by_email_are_throttled_like_by_name(make_settings):
    from support import site_of_its_own

    with site_of_its_own(make_settings(login_max_failures=2), "alice") as (client, site):
        async def give_alice_an_email():
            from sqlalchemy import update

            from authsite.models import User

            async with site.database.sessionmaker() as db:
                await db.exec(update(User).values(email=ALICE_EMAIL, email_key=ALICE_EMAIL.casefold()))
                await db.commit()

        client.portal.call(give_alice_an_email)
        statuses = [log_in(client, ALICE_EMAIL, WRONG_PASSWORD).status_code for _ in range(2)]
        right = log_in(client, ALICE_EMAIL)

    assert statuses == [401, 401]
    assert right.status_code == 429
