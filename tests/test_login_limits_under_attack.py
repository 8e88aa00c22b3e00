"""The login limits against an attacker who sends everything at once, from many addresses of
one IPv6 network, or forever: failures are reserved before the hash (so no more than the limit
are ever checked), only real failures count (so right passwords sent together all get in), the
hashing queue has an end (503 past it), and a throttled burst is one line in the audit log."""

import asyncio
import time
from datetime import timedelta

import httpx2
import pytest
from sqlmodel import col, select

from authsite import passwords
from authsite.events import Kind
from authsite.models import AuthEvent, ThrottleHit, User
from support import PASSWORD, CountingContext

LIMIT = 3  # failed logins per name and address
WINDOW = 60
IP_LIMIT = 6  # failed logins per address, whatever the name
SIGNUP_LIMIT = 2
WRONG_PASSWORD = "another long phrase 9"
NEW_PASSWORD = "new password 456"
NETWORK = "2001:db8:1:2"  # one /64, as one customer of an IPv6 provider holds it


@pytest.fixture
def settings(make_settings):
    return make_settings(
        login_max_failures=LIMIT, login_window_seconds=WINDOW, login_ip_max_failures=IP_LIMIT,
        signup_max_per_ip=SIGNUP_LIMIT, signup_window_seconds=600,
    )


@pytest.fixture
def alice(make_user):
    return make_user("alice")


def all_at_once(client, app, requests: list[tuple[str, dict]]) -> list[httpx2.Response]:
    """POST every (address, body) to the JSON login at the same time, each from its address."""

    async def send():
        async def one(address, body):
            transport = httpx2.ASGITransport(app=app, client=(address, 1234), raise_app_exceptions=False)
            async with httpx2.AsyncClient(transport=transport, base_url="http://testserver") as browser:
                return await browser.post("/api/auth/login", json=body)

        return await asyncio.gather(*(one(address, body) for address, body in requests))

    return client.portal.call(send)


def login_from(client, app, address: str, username="alice", password=PASSWORD) -> httpx2.Response:
    return all_at_once(client, app, [(address, {"username": username, "password": password})])[0]


def events(run_db, kind: Kind) -> list[AuthEvent]:
    async def read(db):
        return list((await db.exec(select(AuthEvent).where(AuthEvent.kind == kind).order_by(col(AuthEvent.id)))).all())

    return run_db(read)


def move_hits_back(run_db, by: timedelta) -> None:
    async def shift(db):
        for row in (await db.exec(select(ThrottleHit))).all():
            row.created_at -= by
            db.add(row)
        await db.commit()

    run_db(shift)


@pytest.fixture
def counting_hashes(monkeypatch) -> CountingContext:
    counting = CountingContext(passwords.CONTEXT)
    monkeypatch.setattr(passwords, "CONTEXT", counting)
    return counting


# Reserved before the hash


def test_simultaneous_wrong_logins_from_one_address_are_checked_at_most_up_to_its_limit(
    app, client, alice, counting_hashes
):
    # Each guess names another account, so only the per-address limit stands in the way.
    guesses = [("192.0.2.7", {"username": f"victim{i}", "password": WRONG_PASSWORD}) for i in range(40)]

    statuses = [response.status_code for response in all_at_once(client, app, guesses)]

    assert set(statuses) <= {401, 429, 503}, statuses
    assert counting_hashes.verifies <= IP_LIMIT, (counting_hashes.verifies, statuses)
    assert statuses.count(401) <= IP_LIMIT


def test_the_right_password_sent_many_times_at_once_from_one_address_always_gets_in(app, client, alice, run_db):
    # A script, or a team behind one NAT, logging in to one account at the same moment.
    logins = [("192.0.2.7", {"username": "alice", "password": PASSWORD})] * (4 * LIMIT)

    statuses = [response.status_code for response in all_at_once(client, app, logins)]

    assert statuses == [200] * len(logins)
    assert events(run_db, Kind.LOGIN_FAILED) == []
    assert len(events(run_db, Kind.LOGIN)) == len(logins)


def test_logins_past_the_hashing_queue_get_503_with_retry_after_instead_of_waiting(
    app, client, site, alice, monkeypatch
):
    capacity = site.hasher.capacity
    real_verify = passwords.CONTEXT.verify_and_update

    def slow_verify(*args):
        time.sleep(0.05)
        return real_verify(*args)

    monkeypatch.setattr(passwords.CONTEXT, "verify_and_update", slow_verify)
    # From as many addresses, so that no rate limit decides: only the queue does.
    logins = [(f"198.51.100.{i}", {"username": "alice", "password": PASSWORD}) for i in range(capacity + 20)]

    responses = all_at_once(client, app, logins)

    statuses = [response.status_code for response in responses]
    assert set(statuses) == {200, 503}, statuses
    assert statuses.count(200) >= capacity
    busy = next(response for response in responses if response.status_code == 503)
    assert busy.headers["retry-after"].isdigit()
    assert "try again" in busy.json()["detail"].lower()
    assert login_from(client, app, "198.51.100.250").status_code == 200  # nothing stays stuck


# One audit line per throttled burst


def test_a_throttled_burst_is_one_audit_event_per_window(app, client, alice, run_db):
    for _ in range(LIMIT):
        assert login_from(client, app, "192.0.2.7", password=WRONG_PASSWORD).status_code == 401

    statuses = [login_from(client, app, "192.0.2.7").status_code for _ in range(25)]

    assert statuses == [429] * 25
    throttled = [e for e in events(run_db, Kind.LOGIN_FAILED) if e.detail.get("reason") == "throttled"]
    assert len(throttled) == 1


def test_the_next_window_of_a_throttled_burst_is_noted_again(app, client, alice, run_db):
    for _ in range(LIMIT):
        login_from(client, app, "192.0.2.7", password=WRONG_PASSWORD)
    assert login_from(client, app, "192.0.2.7").status_code == 429
    move_hits_back(run_db, timedelta(seconds=WINDOW + 1))
    for _ in range(LIMIT):
        login_from(client, app, "192.0.2.7", password=WRONG_PASSWORD)

    assert login_from(client, app, "192.0.2.7").status_code == 429
    assert login_from(client, app, "192.0.2.7").status_code == 429

    throttled = [e for e in events(run_db, Kind.LOGIN_FAILED) if e.detail.get("reason") == "throttled"]
    assert len(throttled) == 2


# IPv6: one network, one bucket


def test_guesses_from_many_addresses_of_one_ipv6_network_share_one_limit(app, client, alice):
    statuses = [
        login_from(client, app, f"{NETWORK}::{i:x}", password=WRONG_PASSWORD).status_code for i in range(1, 2 * LIMIT)
    ]

    assert statuses[:LIMIT] == [401] * LIMIT
    assert set(statuses[LIMIT:]) == {429}


def test_another_ipv6_network_is_not_held_back_by_the_first(app, client, alice):
    for i in range(1, LIMIT + 1):
        login_from(client, app, f"{NETWORK}::{i:x}", password=WRONG_PASSWORD)
    assert login_from(client, app, f"{NETWORK}::ffff").status_code == 429

    assert login_from(client, app, "2001:db8:1:3::1").status_code == 200


def test_an_ipv4_address_written_as_ipv6_is_the_same_client(app, client, alice):
    for _ in range(LIMIT):
        login_from(client, app, "192.0.2.7", password=WRONG_PASSWORD)

    assert login_from(client, app, "::ffff:192.0.2.7").status_code == 429
    assert login_from(client, app, "192.0.2.8").status_code == 200  # IPv4 stays per address


def test_sign_ups_from_many_addresses_of_one_ipv6_network_share_one_limit(app, client, run_db):
    async def sign_up(address: str, username: str) -> int:
        transport = httpx2.ASGITransport(app=app, client=(address, 1234))
        async with httpx2.AsyncClient(transport=transport, base_url="http://testserver") as browser:
            token = (await browser.get("/auth/register")).text.split('name="csrf_token" value="')[1].split('"')[0]
            data = {"username": username, "password": NEW_PASSWORD, "password_confirm": NEW_PASSWORD,
                    "csrf_token": token}
            return (await browser.post("/auth/register", data=data)).status_code

    statuses = [client.portal.call(sign_up, f"{NETWORK}::{i + 1:x}", f"user{i}") for i in range(6)]

    assert statuses == [303] * SIGNUP_LIMIT + [429] * (6 - SIGNUP_LIMIT)

    async def accounts(db):
        return len((await db.exec(select(User))).all())

    assert run_db(accounts) == SIGNUP_LIMIT
