"""Rate limits kept in the database: failed logins per name and address and per address,
sign-ups and reset requests per address, reset requests per account. Past a limit the
answer is 429 with Retry-After, even for the right password; the count holds across
workers, ignores a client's own X-Forwarded-For, expires by itself and is pruned."""

import asyncio
import re
import time
from datetime import timedelta
from pathlib import Path

import httpx2
import pytest
from fastapi.testclient import TestClient
from sqlmodel import col, select

from authsite import create_app, passwords, throttle
from authsite.events import Kind
from authsite.models import AuthEvent, ThrottleHit, User
from support import PASSWORD, CountingContext, csrf_from, form_token, log_in, running_site

WRONG_PASSWORD = "another long phrase 9"
NEW_PASSWORD = "new password 456"
ALICE_EMAIL = "alice@example.com"
CSRF_VALUE = re.compile(r'name="csrf_token" value="[^"]*"')
ELSEWHERE = "198.51.100.9"  # a second client address (TEST-NET-2), reached through the ASGI transport

LIMIT = 3  # failed logins per name and address
WINDOW = 60
IP_LIMIT = 6  # failed logins per address, whatever the name
SIGNUP_LIMIT = 2
SIGNUP_WINDOW = 600
RESET_IP_LIMIT = 4  # above the per-account limit, so that one can be reached first
RESET_WINDOW = 900


@pytest.fixture
def settings(make_settings):
    return make_settings(
        login_max_failures=LIMIT,
        login_window_seconds=WINDOW,
        login_ip_max_failures=IP_LIMIT,
        signup_max_per_ip=SIGNUP_LIMIT,
        signup_window_seconds=SIGNUP_WINDOW,
        reset_max_per_ip=RESET_IP_LIMIT,
        reset_window_seconds=RESET_WINDOW,
    )


@pytest.fixture
def alice(make_user):
    return make_user("alice", email=ALICE_EMAIL)


def another_browser(app, client) -> TestClient:
    """A second browser on the same running site and address: its own cookies, the app's loop."""
    other = TestClient(app, base_url="http://testserver", follow_redirects=False)
    other.portal = client.portal
    return other


def api_login(browser, username="alice", password=PASSWORD, headers=None):
    return browser.post("/api/auth/login", json={"username": username, "password": password}, headers=headers)


def fail_logins(browser, times: int, username: str = "alice") -> None:
    for _ in range(times):
        response = api_login(browser, username, WRONG_PASSWORD)
        assert response.status_code == 401, response.text


def assert_throttled(response, window: int = WINDOW) -> int:
    assert response.status_code == 429, response.text
    seconds = response.headers["retry-after"]
    assert seconds.isdigit() and 0 < int(seconds) <= window, seconds
    assert "session" not in response.cookies
    return int(seconds)


def api_login_from(client, app, address: str, username="alice", password=PASSWORD) -> httpx2.Response:
    """An API login from another client address (request.client.host is `address`)."""

    async def send():
        transport = httpx2.ASGITransport(app=app, client=(address, 1234))
        async with httpx2.AsyncClient(transport=transport, base_url="http://testserver") as browser:
            return await browser.post("/api/auth/login", json={"username": username, "password": password})

    return client.portal.call(send)


def throttle_rows(run_db) -> list[ThrottleHit]:
    async def read(db):
        return list((await db.exec(select(ThrottleHit).order_by(col(ThrottleHit.id)))).all())

    return run_db(read)


def move_hits_back(run_db, by: timedelta) -> None:
    """As if `by` had passed since every counted request."""

    async def shift(db):
        for row in (await db.exec(select(ThrottleHit))).all():
            row.created_at -= by
            db.add(row)
        await db.commit()

    run_db(shift)


def ask_for_link(browser, login: str):
    return browser.post("/auth/reset", data={"login": login, "csrf_token": form_token(browser, "/auth/reset")})


def outbox(settings) -> set[Path]:
    return set((settings.data_dir / "outbox").glob("*.eml"))


def sign_up(browser, username: str):
    data = {
        "username": username,
        "password": NEW_PASSWORD,
        "password_confirm": NEW_PASSWORD,
        "csrf_token": form_token(browser, "/auth/register"),
    }
    return browser.post("/auth/register", data=data)


def reset_status_from(client, app, address: str, login: str) -> int:
    async def send():
        transport = httpx2.ASGITransport(app=app, client=(address, 1234))
        async with httpx2.AsyncClient(transport=transport, base_url="http://testserver") as browser:
            token = csrf_from((await browser.get("/auth/reset")).text)
            return (await browser.post("/auth/reset", data={"login": login, "csrf_token": token})).status_code

    return client.portal.call(send)


def masked(response, typed: str) -> tuple:
    """What a client sees, with the csrf token, the typed text and cookie values blanked."""
    body = CSRF_VALUE.sub("", response.text.replace(typed, "<typed>"))
    headers = sorted(
        (name, re.sub(r"=[^;]*", "=<value>", value, count=1) if name == "set-cookie" else value)
        for name, value in response.headers.multi_items()
        if name not in ("retry-after", "content-length")
    )
    return response.status_code, body, headers


# Too many failures


def test_after_too_many_failures_even_the_right_password_gets_429_on_the_form(client, alice):
    for _ in range(LIMIT):
        assert log_in(client, password=WRONG_PASSWORD).status_code == 401

    response = log_in(client)

    assert_throttled(response)
    assert "Too many attempts" in response.text
    assert 'name="password"' in response.text  # the form again, to try later
    assert client.get("/api/me").status_code == 401


def test_after_too_many_failures_even_the_right_password_gets_429_from_the_api(client, alice):
    fail_logins(client, LIMIT)

    response = api_login(client)

    assert_throttled(response)
    assert response.headers["content-type"].startswith("application/json")
    assert set(response.json()) == {"detail"}
    assert "Too many attempts" in response.json()["detail"]
    assert client.get("/api/me").status_code == 401


def test_form_and_api_failures_count_together(client, alice):
    assert log_in(client, password=WRONG_PASSWORD).status_code == 401
    fail_logins(client, LIMIT - 1)

    assert_throttled(log_in(client))


def test_the_limit_holds_across_two_workers_on_one_database(client, settings, alice):
    # Two apps on one database are two workers (or two hosts) of one site.
    with TestClient(create_app(settings), base_url="http://testserver", follow_redirects=False) as second_worker:
        fail_logins(client, LIMIT - 1)
        fail_logins(second_worker, 1)

        assert_throttled(api_login(second_worker))
        assert_throttled(api_login(client))


def test_a_spoofed_x_forwarded_for_changes_nothing(client, alice):
    for i in range(LIMIT):
        spoofed = f"203.0.113.{i}"
        headers = {"x-forwarded-for": spoofed, "x-real-ip": spoofed, "forwarded": f"for={spoofed}"}
        assert api_login(client, password=WRONG_PASSWORD, headers=headers).status_code == 401

    assert_throttled(api_login(client, headers={"x-forwarded-for": "203.0.113.200"}))


def test_the_owner_still_logs_in_from_another_address(app, client, alice, run_db):
    fail_logins(client, LIMIT)
    assert_throttled(api_login(client))

    response = api_login_from(client, app, ELSEWHERE)

    assert response.status_code == 200, response.text
    assert response.json()["user"]["username"] == "alice"
    assert_throttled(api_login(client))  # the attacker's address stays blocked

    async def last_login_address(db):
        statement = select(AuthEvent.ip).where(AuthEvent.kind == Kind.LOGIN).order_by(col(AuthEvent.id).desc())
        return (await db.exec(statement)).first()

    assert run_db(last_login_address) == ELSEWHERE


def test_the_per_address_limit_stops_guessing_across_many_names(app, client, alice):
    for i in range(IP_LIMIT):
        fail_logins(client, 1, username=f"victim{i}")

    assert_throttled(api_login(client, "victim-next", WRONG_PASSWORD))
    # The whole address is blocked, the right password included...
    assert_throttled(api_login(client))
    # ...but only that address.
    assert api_login_from(client, app, ELSEWHERE).status_code == 200


def test_counters_expire_by_themselves(client, alice, run_db):
    fail_logins(client, LIMIT)
    assert_throttled(api_login(client))

    move_hits_back(run_db, timedelta(seconds=WINDOW + 1))

    assert api_login(client).status_code == 200


def test_waiting_as_long_as_retry_after_says_is_enough(client, alice, run_db):
    # One typo, two more a while later (spread over the window, as a person
    # makes them), then even the right password is refused for a while.
    fail_logins(client, 1)
    move_hits_back(run_db, timedelta(seconds=WINDOW * 2 // 3))
    fail_logins(client, LIMIT - 1)
    retry_after = assert_throttled(api_login(client))

    move_hits_back(run_db, timedelta(seconds=retry_after))

    # Retry-After promised this attempt would be let through.
    response = api_login(client)
    assert response.status_code == 200, (response.status_code, response.headers.get("retry-after"))


def test_successful_logins_never_count_towards_the_limit(client, alice):
    for _ in range(LIMIT + 2):
        client.cookies.clear()
        assert api_login(client).status_code == 200

    client.cookies.clear()
    fail_logins(client, LIMIT)  # the whole allowance of failures is still there
    assert_throttled(api_login(client))


def test_a_success_takes_back_only_its_own_attempt_not_earlier_failures(client, alice):
    # A success does not wipe the slate: failures before it stay counted until
    # they expire. Otherwise an attacker who knows one password could keep
    # guessing another account's from the same address for ever.
    fail_logins(client, LIMIT - 1)
    assert api_login(client).status_code == 200
    client.cookies.clear()

    fail_logins(client, 1)  # the last failure the window allows
    assert_throttled(api_login(client))


def test_unknown_names_are_throttled_like_existing_ones(client, alice):
    fail_logins(client, LIMIT, username="nobody")

    assert_throttled(api_login(client, "nobody", WRONG_PASSWORD))
    assert api_login(client).status_code == 200  # another name from the same address is untouched


def test_a_throttled_attempt_is_audited_as_a_failed_login(client, alice, run_db):
    fail_logins(client, LIMIT)
    assert_throttled(log_in(client, "Alice"))

    async def last_event(db):
        return (await db.exec(select(AuthEvent).order_by(col(AuthEvent.id).desc()))).first()

    event = run_db(last_event)
    assert event.kind == Kind.LOGIN_FAILED
    assert event.detail["reason"] == "throttled"
    assert event.detail["via"] == "form"
    assert event.username == "Alice"
    assert event.ip == "testclient"


def test_a_burst_of_simultaneous_failures_gets_at_most_the_limit_checked(app, client, alice, monkeypatch):
    counting = CountingContext(passwords.CONTEXT)
    monkeypatch.setattr(passwords, "CONTEXT", counting)
    attempts = 20

    async def all_at_once():
        transport = httpx2.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx2.AsyncClient(transport=transport, base_url="http://testserver") as browser:
            body = {"username": "alice", "password": WRONG_PASSWORD}
            return await asyncio.gather(*(browser.post("/api/auth/login", json=body) for _ in range(attempts)))

    statuses = [response.status_code for response in client.portal.call(all_at_once)]

    assert set(statuses) <= {401, 429}, statuses
    assert statuses.count(401) <= LIMIT, statuses
    assert counting.verifies == statuses.count(401)


# Old rows


def test_prune_deletes_only_rows_older_than_asked(client, site, alice, run_db):
    fail_logins(client, 1)
    move_hits_back(run_db, timedelta(hours=2))
    fail_logins(client, 1)
    recent = [row.id for row in throttle_rows(run_db)][2:]  # one failure = a row per bucket

    client.portal.call(lambda: site.throttle.prune(older_than=timedelta(hours=1)))

    assert [row.id for row in throttle_rows(run_db)] == recent


def test_the_running_site_prunes_old_rows_by_itself(client, settings, alice, run_db, site):
    fail_logins(client, 2)
    move_hits_back(run_db, site.limits.longest_window + timedelta(minutes=1))
    fail_logins(client, 1)
    assert len(throttle_rows(run_db)) == 6

    # A worker starting (as after a deploy) prunes at once, then every few minutes.
    with TestClient(create_app(settings), base_url="http://testserver"):
        deadline = time.monotonic() + 5
        while len(throttle_rows(run_db)) > 2 and time.monotonic() < deadline:
            time.sleep(0.02)

    assert len(throttle_rows(run_db)) == 2  # the recent failure's two rows stay


# Sign-ups and reset requests


def test_sign_ups_past_the_per_address_limit_get_429_and_create_nobody(client, run_db):
    for name in ("bob", "carol")[:SIGNUP_LIMIT]:
        assert sign_up(client, name).status_code == 303
        client.cookies.clear()  # signed up = logged in; the next sign-up is a fresh visitor

    response = sign_up(client, "dave")

    assert_throttled(response, SIGNUP_WINDOW)
    assert "Too many attempts" in response.text

    async def usernames(db):
        return sorted((await db.exec(select(User.username))).all())

    assert run_db(usernames) == ["bob", "carol"]


def test_reset_requests_past_the_per_address_limit_get_429(client, site, settings, alice):
    for i in range(RESET_IP_LIMIT):
        assert ask_for_link(client, f"someone{i}").status_code == 200
    before = outbox(settings)

    response = ask_for_link(client, "alice")

    assert_throttled(response, RESET_WINDOW)
    assert "Too many attempts" in response.text
    client.portal.call(site.mailer.wait_until_sent)
    assert outbox(settings) == before


def test_the_reset_429_page_is_the_same_for_existing_and_unknown_names(app, client, alice):
    for i in range(RESET_IP_LIMIT):
        ask_for_link(client, f"someone{i}")

    # Two names of one length: the typed name is shown back in the form.
    existing = ask_for_link(another_browser(app, client), "alice")
    unknown = ask_for_link(another_browser(app, client), "zelda")

    assert_throttled(existing, RESET_WINDOW)
    assert_throttled(unknown, RESET_WINDOW)
    assert masked(existing, "alice") == masked(unknown, "zelda")


@pytest.mark.parametrize("login", ["alice", "ALICE@example.com", "nobody"])
def test_more_than_three_reset_requests_for_one_login_an_hour_are_throttled(
    app, client, site, settings, alice, login
):
    assert throttle.RESET_MAX_PER_ACCOUNT == 3
    before = outbox(settings)

    statuses = [ask_for_link(client, login).status_code for _ in range(4)]
    client.portal.call(site.mailer.wait_until_sent)

    assert statuses == [200, 200, 200, 429]
    assert len(outbox(settings) - before) == (0 if login == "nobody" else 3)
    # Per account, not per address: another address is refused too.
    assert reset_status_from(client, app, ELSEWHERE, login) == 429


def test_asking_by_name_and_by_email_still_mails_an_account_at_most_three_times_an_hour(
    client, site, settings, alice
):
    # Whether the answer is a 429 or the same page without a mail is the site's
    # choice (a 429 would tie the email to the name); the inbox must not fill.
    for login in ("alice", "alice", ALICE_EMAIL, ALICE_EMAIL):
        ask_for_link(client, login)
    client.portal.call(site.mailer.wait_until_sent)

    assert len(outbox(settings)) <= throttle.RESET_MAX_PER_ACCOUNT


# The real server: uvicorn must not believe a client's own proxy headers


@pytest.fixture
def throttled_server(tmp_path, database_url):
    """`python run.py` on a free loopback port with LIMIT failures allowed; stopped by PID."""
    with running_site(tmp_path, database_url, login_max_failures=str(LIMIT),
                      login_window_seconds=str(WINDOW)) as (url, _):
        yield url


def test_the_real_server_ignores_a_clients_own_x_forwarded_for(throttled_server):
    # No user needed: unknown names are throttled the same way.
    with httpx2.Client(base_url=throttled_server, timeout=10) as script:
        for i in range(LIMIT):
            headers = {"x-forwarded-for": f"203.0.113.{i}", "forwarded": f"for=203.0.113.{i}"}
            assert api_login(script, "mallory", WRONG_PASSWORD, headers).status_code == 401

        response = api_login(script, "mallory", WRONG_PASSWORD, {"x-forwarded-for": "203.0.113.200"})

    assert_throttled(response)


def test_many_people_behind_one_address_logging_in_at_once_are_never_refused(app, client, run_db):
    # Only failures count against an address: 3 x IP_LIMIT correct logins from one
    # address (an office behind NAT at nine o'clock) must all get in.
    people = [f"person{i}" for i in range(3 * IP_LIMIT)]

    async def create_people(db):
        hashed = passwords.CONTEXT.hash(PASSWORD)
        for name in people:
            db.add(User(username=name, username_key=name, password_hash=hashed))
        await db.commit()

    run_db(create_people)

    async def all_at_once():
        transport = httpx2.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx2.AsyncClient(transport=transport, base_url="http://testserver") as browser:
            return await asyncio.gather(
                *(browser.post("/api/auth/login", json={"username": name, "password": PASSWORD}) for name in people)
            )

    statuses = [response.status_code for response in client.portal.call(all_at_once)]

    assert statuses == [200] * len(people)
