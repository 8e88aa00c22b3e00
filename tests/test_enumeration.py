"""No account enumeration: on login, an unknown name, a wrong password, an inactive account
and a throttled account look the same to the client (status, body, headers, cookies) and
cost the same password work; reset requests look the same whether or not there is an
account (or an email to send to). Only registration may say a name is taken.

Comparisons blank what differs on every response anyway: the csrf token in the form and
cookie values. No wall-clock timing: the work is counted instead."""

import re
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import delete

from authsite import accounts, passwords
from authsite.accounts import USERNAME_TAKEN
from authsite.models import ThrottleHit
from authsite.web.auth import FAILED_LOGIN_MESSAGE
from support import PASSWORD, CountingContext, form_token, log_in

WRONG_PASSWORD = "another long phrase 9"
NEW_PASSWORD = "new password 456"
LIMIT = 3
WINDOW = 60
CSRF_VALUE = re.compile(r'(name="csrf_token" value=")[^"]*"')


@pytest.fixture
def settings(make_settings):
    # A real per-name limit; every test but the throttling ones stays under it.
    return make_settings(login_max_failures=LIMIT, login_window_seconds=WINDOW)


@pytest.fixture
def counting(monkeypatch) -> CountingContext:
    context = CountingContext(passwords.CONTEXT)
    monkeypatch.setattr(passwords, "CONTEXT", context)
    return context


def fresh_browser(app, client) -> TestClient:
    """A visitor who has never been here: no cookies. Same site, same app loop."""
    browser = TestClient(app, base_url="http://testserver", follow_redirects=False)
    browser.portal = client.portal
    return browser


def seen_by_client(response) -> tuple:
    """Everything a client can compare: status, body, headers, cookie names and attributes;
    with the csrf token, cookie values and the seconds of Retry-After blanked."""
    body = CSRF_VALUE.sub(r'\1"', response.text)
    headers = []
    for name, value in response.headers.multi_items():
        if name == "set-cookie":
            cookie_name, _, rest = value.partition("=")
            value = f"{cookie_name}=<value>;{rest.partition(';')[2]}"
        elif name == "retry-after":
            value = "<seconds>"
        elif name == "content-length":
            continue  # follows the body, compared already
        headers.append((name, value))
    return response.status_code, body, sorted(headers)


def form_login(app, client, password=PASSWORD, username="alice"):
    return log_in(fresh_browser(app, client), username, password)


def api_login(app, client, password=PASSWORD, username="alice"):
    browser = fresh_browser(app, client)
    return browser.post("/api/auth/login", json={"username": username, "password": password})


LOGINS = {"form": form_login, "api": api_login}


def deactivate(run_db, username="alice") -> None:
    async def work(db):
        user = await accounts.get_user_by_username(db, username)
        await accounts.set_user_active(db=db, user=user, active=False)

    run_db(work)


def forget_throttling(run_db) -> None:
    async def work(db):
        await db.exec(delete(ThrottleHit))
        await db.commit()

    run_db(work)


# Logging in


@pytest.mark.parametrize("via", LOGINS)
def test_unknown_user_wrong_password_and_inactive_account_look_the_same(app, client, make_user, run_db, via):
    login = LOGINS[via]
    # One typed name throughout, so only the account's state differs.
    unknown = login(app, client)
    make_user("alice")
    wrong_password = login(app, client, WRONG_PASSWORD)
    deactivate(run_db)
    inactive = login(app, client)

    assert unknown.status_code == 401
    assert seen_by_client(unknown) == seen_by_client(wrong_password) == seen_by_client(inactive)
    assert "session" not in unknown.cookies


@pytest.mark.parametrize("via", LOGINS)
def test_a_throttled_account_looks_like_a_throttled_unknown_name(app, client, make_user, run_db, via):
    login = LOGINS[via]

    def throttled_answer():
        for _ in range(LIMIT):
            assert login(app, client, WRONG_PASSWORD).status_code == 401
        return login(app, client)  # even the right password, once throttled

    unknown = throttled_answer()
    forget_throttling(run_db)
    make_user("alice")
    existing = throttled_answer()

    assert unknown.status_code == existing.status_code == 429
    assert 0 < int(unknown.headers["retry-after"]) <= WINDOW
    assert 0 < int(existing.headers["retry-after"]) <= WINDOW
    assert seen_by_client(unknown) == seen_by_client(existing)


@pytest.mark.parametrize("via", LOGINS)
@pytest.mark.parametrize("case", ["unknown user", "wrong password", "inactive account", "success"])
def test_every_login_costs_exactly_one_password_verify(app, client, make_user, counting, via, case):
    # tests/test_passwords.py shows the unknown user's verify runs against a hash
    # as strong as a real one; here every outcome, on the form and the API.
    if case != "unknown user":
        make_user("alice", active=case != "inactive account")
    counting.verifies = 0

    response = LOGINS[via](app, client, WRONG_PASSWORD if case == "wrong password" else PASSWORD)

    assert response.status_code in ((200, 303) if case == "success" else (401,))
    assert counting.verifies == 1


@pytest.mark.parametrize("exists", [True, False], ids=["existing", "unknown"])
def test_a_throttled_attempt_checks_no_password_whether_or_not_the_account_exists(
    app, client, make_user, counting, exists
):
    if exists:
        make_user("alice")
    for _ in range(LIMIT):
        api_login(app, client, WRONG_PASSWORD)
    counting.verifies = 0

    assert api_login(app, client).status_code == 429
    assert counting.verifies == 0


# Asking for a reset link


def outbox(settings) -> set[Path]:
    return set((settings.data_dir / "outbox").glob("*.eml"))


def test_reset_requests_look_the_same_whatever_the_login_and_only_an_account_with_email_gets_mail(
    app, client, site, settings, make_user
):
    # tests/test_password_reset.py compares the bodies; here also headers and cookies.
    make_user("alice", email="alice@example.com")
    make_user("bob")
    make_user("carol", email="carol@example.com", active=False)
    logins = ["alice", "bob", "carol", "nobody", "nobody@example.com", "carol@example.com"]

    answers, mails = {}, {}
    for login in logins:
        before = outbox(settings)
        browser = fresh_browser(app, client)
        answers[login] = browser.post(
            "/auth/reset", data={"login": login, "csrf_token": form_token(browser, "/auth/reset")}
        )
        client.portal.call(site.mailer.wait_until_sent)
        mails[login] = len(outbox(settings) - before)

    assert answers["alice"].status_code == 200
    for login in logins:
        assert seen_by_client(answers[login]) == seen_by_client(answers["alice"]), login
    assert mails == {login: int(login == "alice") for login in logins}


# Only registration tells


def test_only_registration_says_a_name_is_taken(client, make_user):
    make_user("alice", email="alice@example.com")

    # Registration must say so (tests/test_register.py covers every spelling)...
    sign_up = client.post("/auth/register", data={
        "username": "alice", "password": NEW_PASSWORD, "password_confirm": NEW_PASSWORD,
        "csrf_token": form_token(client, "/auth/register"),
    })
    assert sign_up.status_code == 400
    assert USERNAME_TAKEN in sign_up.text

    # ...the login and reset pages only ever say the neutral thing (the tests
    # above show they say it identically for names that do not exist).
    login = log_in(client, "alice", WRONG_PASSWORD)
    reset = client.post("/auth/reset", data={"login": "alice", "csrf_token": form_token(client, "/auth/reset")})
    assert FAILED_LOGIN_MESSAGE in login.text
    assert "If an account with that name or address exists" in reset.text
    for page in (login.text, reset.text):
        assert USERNAME_TAKEN not in page
        assert "taken" not in page.lower()
