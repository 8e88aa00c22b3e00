"""Logging in to an account with an authenticator app: the password, then a code at /auth/mfa
(or its JSON twin), with no session until the code is right; and what an attacker who has the
password, or only the pending-login cookie, cannot do."""

from datetime import timedelta

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import update
from sqlmodel import select

from authsite.models import PendingStep, Session, utcnow
from support import PASSWORD, csrf_from, log_in, second_step, site_of_its_own, turn_on_totp

PENDING_COOKIE = "pending_login"


@pytest.fixture
def phone(logged_in_client, clock, site):
    """Alice's authenticator app, set up from her account page; she has logged out since."""
    authenticator = turn_on_totp(logged_in_client, clock)
    token = csrf_from(logged_in_client.get("/account").text)
    logged_in_client.post("/auth/logout", data={"csrf_token": token})
    logged_in_client.cookies.clear()
    return authenticator


@pytest.fixture
def other_browser(app, client) -> TestClient:
    other = TestClient(app, base_url="http://testserver", follow_redirects=False)
    other.portal = client.portal
    return other


def session_rows(run_db) -> list[Session]:
    async def read(db):
        return list((await db.exec(select(Session))).all())

    return run_db(read)


def is_logged_in(client) -> bool:
    return client.get("/api/me").status_code == 200


def api_login(client, password=PASSWORD, username="alice", **extra):
    return client.post("/api/auth/login", json={"username": username, "password": password, **extra})


# The first step


def test_the_right_password_leads_to_the_second_step_without_a_session(client, phone, run_db):
    response = log_in(client)

    assert (response.status_code, response.headers["location"]) == (303, "/auth/mfa")
    assert "session" not in response.cookies
    assert response.cookies[PENDING_COOKIE]
    assert session_rows(run_db) == []
    assert not is_logged_in(client)


def test_the_pending_login_cookie_is_httponly_strict_and_short(client, phone):
    header = log_in(client).headers["set-cookie"].lower()

    assert f"{PENDING_COOKIE}=" in header
    assert "httponly" in header and "samesite=strict" in header and "max-age=300" in header


def test_a_wrong_password_never_reaches_the_second_step(client, phone):
    response = log_in(client, password="not the password at all")

    assert response.status_code == 401
    assert PENDING_COOKIE not in response.cookies


def test_the_second_step_page_names_nobody(client, phone):
    log_in(client)

    page = client.get("/auth/mfa").text

    assert "alice" not in page.lower()


# The second step


def test_a_current_code_logs_in(client, phone, run_db):
    log_in(client)

    response = second_step(client, phone.next_code())

    assert (response.status_code, response.headers["location"]) == (303, "/")
    assert response.cookies["session"]
    assert is_logged_in(client)
    assert len(session_rows(run_db)) == 1


def test_next_carries_through_the_second_step(client, phone):
    response = log_in(client, next_path="/account?tab=sessions")
    assert response.headers["location"] == "/auth/mfa?next=/account%3Ftab%3Dsessions"

    response = second_step(client, phone.next_code(), next_path="/account?tab=sessions")

    assert response.headers["location"] == "/account?tab=sessions"


def test_remember_me_carries_through_the_second_step(client, phone, settings):
    log_in(client, remember=True)

    response = second_step(client, phone.next_code())

    assert f"max-age={settings.remember_seconds}" in response.headers["set-cookie"].lower()


def test_a_wrong_code_answers_401_and_asks_again(client, phone):
    log_in(client)

    response = second_step(client, "000000" if phone.code() != "000000" else "111111")

    assert response.status_code == 401
    assert "That code is not right." in response.text
    assert not is_logged_in(client)


def test_a_code_accepted_once_is_refused_for_the_rest_of_its_window(client, other_browser, phone):
    code = phone.next_code()
    log_in(client)
    assert second_step(client, code).status_code == 303

    log_in(other_browser)  # someone who saw the password and the code over her shoulder
    response = second_step(other_browser, code)

    assert response.status_code == 401
    assert not is_logged_in(other_browser)


def test_an_older_code_than_the_last_one_used_is_refused(client, other_browser, phone):
    log_in(client)
    assert second_step(client, phone.code(steps_ahead=1)).status_code == 303

    log_in(other_browser)

    assert second_step(other_browser, phone.code()).status_code == 401


def test_a_clock_two_steps_off_is_refused(client, phone):
    log_in(client)

    assert second_step(client, phone.code(steps_ahead=3)).status_code == 401


def test_a_recovery_code_logs_in_once(client, other_browser, phone):
    code = phone.recovery_codes[0]
    log_in(client)
    response = second_step(client, code.upper().replace("-", " "))  # as typed from a printout
    assert response.status_code == 303
    assert "recovery code" in client.get(response.headers["location"]).text

    log_in(other_browser)

    assert second_step(other_browser, code).status_code == 401


def test_five_wrong_codes_end_the_pending_login(client, phone, run_db):
    log_in(client)
    for _ in range(4):
        assert second_step(client, "12345a").status_code == 401

    fifth = second_step(client, "12345a")

    assert (fifth.status_code, fifth.headers["location"]) == (303, "/auth/login")
    assert run_db(lambda db: _all(db, PendingStep)) == []
    assert second_step(client, phone.next_code()).headers["location"] == "/auth/login"
    assert not is_logged_in(client)


async def _all(db, model):
    return list((await db.exec(select(model))).all())


def test_without_a_pending_login_the_second_step_sends_to_the_login_page(client, phone):
    assert client.get("/auth/mfa").headers["location"] == "/auth/login"
    client.cookies.set("csrftoken", "x" * 43)
    assert second_step(client, phone.code()).headers["location"] == "/auth/login"


def test_a_forged_pending_cookie_leads_nowhere(client, phone):
    log_in(client)
    client.cookies.delete(PENDING_COOKIE)
    client.cookies.set(PENDING_COOKIE, "A" * 43)

    response = second_step(client, phone.next_code())

    assert response.headers["location"] == "/auth/login"
    assert not is_logged_in(client)


def test_the_pending_login_lasts_five_minutes(client, phone, run_db):
    log_in(client)

    async def age(db):
        await db.exec(update(PendingStep).values(expires_at=utcnow() - timedelta(seconds=1)))
        await db.commit()

    run_db(age)

    assert second_step(client, phone.next_code()).headers["location"] == "/auth/login"
    assert not is_logged_in(client)


def test_the_pending_login_belongs_to_the_browser_that_typed_the_password(client, other_browser, phone):
    log_in(client)
    other_browser.get("/auth/login")  # its own CSRF cookie, but not the pending login

    response = second_step(other_browser, phone.next_code())

    assert response.headers["location"] == "/auth/login"
    assert not is_logged_in(other_browser)


def test_a_password_changed_meanwhile_ends_the_pending_login(client, phone, run_db, site):
    from authsite import accounts
    from authsite.models import User

    log_in(client)

    async def change(db):
        user = (await db.exec(select(User))).one()
        await accounts.set_password(db=db, hasher=site.hasher, user=user, password="an entirely new passphrase 7")

    run_db(change)

    assert second_step(client, phone.next_code()).headers["location"] == "/auth/login"
    assert not is_logged_in(client)


def test_wrong_codes_count_toward_the_login_throttle(make_settings):
    # A site with the real limit: every pending login costs the attacker the password, and the
    # codes they guess count as failed logins all the same.
    with site_of_its_own(make_settings(login_max_failures=3), "alice") as (client, site):
        log_in(client)
        phone = turn_on_totp(client, site.factors.clock)
        client.post("/auth/logout", data={"csrf_token": csrf_from(client.get("/account").text)})
        log_in(client)
        answers = [second_step(client, "99999x").status_code for _ in range(3)]
        throttled = second_step(client, phone.next_code())

    assert answers == [401, 401, 401]
    assert throttled.status_code == 429
    assert throttled.headers["retry-after"].isdigit()


# The JSON twin


def test_the_api_answers_202_with_the_methods_and_no_session(client, phone):
    response = api_login(client)

    assert response.status_code == 202
    assert response.json() == {"mfa_required": True, "methods": ["totp", "recovery_code"]}
    assert "session" not in response.cookies and response.cookies[PENDING_COOKIE]


def test_the_api_second_step_logs_in_with_a_code(client, phone):
    api_login(client)

    response = client.post("/api/auth/mfa", json={"code": phone.next_code()})

    assert response.status_code == 200
    assert response.json()["user"]["username"] == "alice"
    assert is_logged_in(client)


def test_the_api_second_step_refuses_a_wrong_code_with_401(client, phone):
    api_login(client)

    response = client.post("/api/auth/mfa", json={"code": "000000" if phone.code() != "000000" else "111111"})

    assert response.status_code == 401
    assert response.json() == {"detail": "That code is not right."}


def test_the_api_second_step_answers_429_at_the_fifth_wrong_code(client, phone):
    api_login(client)
    statuses = [client.post("/api/auth/mfa", json={"code": "12345a"}).status_code for _ in range(5)]

    assert statuses == [401, 401, 401, 401, 429]
    assert client.post("/api/auth/mfa", json={"code": phone.next_code()}).status_code == 401


def test_the_api_second_step_without_a_pending_login_is_401(client, phone):
    response = client.post("/api/auth/mfa", json={"code": phone.code()})

    assert response.status_code == 401
    assert "Log in again" in response.json()["detail"]


def test_a_password_reset_does_not_skip_the_second_step(client, phone, run_db, site):
    from authsite import resets
    from authsite.models import User

    async def link(db):
        return await resets.create_reset_token(db=db, user=(await db.exec(select(User))).one())

    token = run_db(link)
    page = client.get(f"/auth/reset/{token}").text
    new_password = "an entirely new passphrase 7"
    client.post(f"/auth/reset/{token}", data={"csrf_token": csrf_from(page), "password": new_password,
                                              "password_confirm": new_password})

    response = log_in(client, password=new_password)

    assert response.headers["location"] == "/auth/mfa"
    assert not is_logged_in(client)


def test_finishing_a_second_step_ends_only_this_browsers_own_earlier_session(app, client, make_user, clock):
    """The browser's session at the first step ends when the second one opens, but not by a row id
    another session may have taken since (SQLite reuses the ids of deleted rows)."""

    def browser():
        other = TestClient(app, base_url="http://testserver", follow_redirects=False)
        other.portal = client.portal
        return other

    make_user("mallory")
    make_user("mallory2")
    make_user("bob")
    setup = browser()
    log_in(setup, "mallory2")
    phone = turn_on_totp(setup, clock)
    setup.post("/auth/logout", data={"csrf_token": csrf_from(setup.get("/account").text)})
    mallory = browser()
    log_in(mallory, "mallory")
    assert mallory.post("/api/auth/login", json={"username": "mallory2", "password": PASSWORD}).status_code == 202
    mallory.post("/api/auth/logout", json={})
    bob = browser()
    log_in(bob, "bob")

    assert mallory.post("/api/auth/mfa", json={"code": phone.next_code()}).status_code == 200
    assert bob.get("/api/me").status_code == 200


def test_finishing_a_second_step_ends_the_browsers_earlier_session(app, client, make_user, clock, run_db):
    make_user("mallory")
    make_user("mallory2")
    setup = TestClient(app, base_url="http://testserver", follow_redirects=False)
    setup.portal = client.portal
    log_in(setup, "mallory2")
    phone = turn_on_totp(setup, clock)
    log_in(client, "mallory")
    before = {row.token_hash for row in session_rows(run_db)}

    assert api_login(client, username="mallory2").status_code == 202
    assert client.post("/api/auth/mfa", json={"code": phone.next_code()}).status_code == 200

    assert client.get("/api/me").json()["username"] == "mallory2"
    after = {row.token_hash for row in session_rows(run_db)}
    assert len(before - after) == 1 and len(after) == 2  # mallory's old session made way for the new one


def from_address(client, app, address: str, code: str) -> int:
    """Someone with alice's password at `address`: the password, then `code`; the second step's status."""
    import httpx2

    async def send():
        transport = httpx2.ASGITransport(app=app, client=(address, 1234))
        async with httpx2.AsyncClient(transport=transport, base_url="http://testserver") as browser:
            first = await browser.post("/api/auth/login", json={"username": "alice", "password": PASSWORD})
            assert first.status_code == 202, first.text
            return (await browser.post("/api/auth/mfa", json={"code": code})).status_code

    return client.portal.call(send)


def test_codes_guessed_from_many_addresses_share_one_limit_per_account(app, client, phone):
    from authsite.throttle import SECOND_FACTOR_FAILURES

    guesses = [from_address(client, app, f"198.51.100.{i}", "12345x") for i in range(SECOND_FACTOR_FAILURES)]
    right_code_from_yet_another = from_address(client, app, "198.51.100.200", phone.next_code())

    assert guesses == [401] * SECOND_FACTOR_FAILURES
    assert right_code_from_yet_another == 429


def test_the_owners_own_browser_still_gets_in_while_the_account_limit_holds(app, client, logged_in_client, clock):
    from authsite.throttle import SECOND_FACTOR_FAILURES

    # Her browser has signed in to her account before: its device cookie vouches for it.
    phone = turn_on_totp(logged_in_client, clock)
    logged_in_client.post("/auth/logout", data={"csrf_token": csrf_from(logged_in_client.get("/account").text)})
    for i in range(SECOND_FACTOR_FAILURES):
        from_address(client, app, f"198.51.100.{i}", "12345x")

    log_in(logged_in_client)

    assert second_step(logged_in_client, phone.next_code()).status_code == 303


def test_a_browser_that_signed_in_before_guesses_codes_no_faster(logged_in_client, clock):
    """A device cookie got while someone had only the password (before the owner turned the app
    on) counts its wrong codes apart from strangers', but at the same slow rate."""
    from authsite.throttle import SECOND_FACTOR_FAILURES

    phone = turn_on_totp(logged_in_client, clock)
    logged_in_client.post("/auth/logout", data={"csrf_token": csrf_from(logged_in_client.get("/account").text)})
    for _ in range(SECOND_FACTOR_FAILURES // 2):
        log_in(logged_in_client)
        for _ in range(2):
            assert second_step(logged_in_client, "12345x").status_code == 401

    log_in(logged_in_client)

    assert second_step(logged_in_client, phone.next_code()).status_code == 429
