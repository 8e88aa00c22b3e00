"""Races: requests sent at the same moment, in the app's own event loop through the ASGI
transport, on SQLite and on Postgres. Every outcome is one a client could get from some
order of the requests; never a 5xx, never SQLite's "database is locked".

Covered elsewhere, not repeated here:
- parallel sign-ups of one name and of NFKC-equivalent names:
  tests/test_register.py::test_simultaneous_sign_ups_of_one_name_create_exactly_one_user
- one reset link used twice at once:
  tests/test_password_reset.py::test_one_link_used_twice_at_once_succeeds_exactly_once"""

import asyncio
import contextlib
import logging

import httpx2
import pytest
from passlib.context import CryptContext
from sqlmodel import select

from authsite import passwords, rules, tokens
from authsite.events import Kind
from authsite.models import AuthEvent, Session, User
from support import PASSWORD, csrf_from

LOCKED = "database is locked"


@contextlib.asynccontextmanager
async def browsers(app, count: int):
    """`count` browsers with their own cookie jars; a 5xx comes back as a response, not an exception."""
    transport = httpx2.ASGITransport(app=app, raise_app_exceptions=False)
    opened = [httpx2.AsyncClient(transport=transport, base_url="http://testserver") for _ in range(count)]
    try:
        yield opened
    finally:
        await asyncio.gather(*(browser.aclose() for browser in opened))


async def api_log_in(browser, username="alice", password=PASSWORD) -> httpx2.Response:
    return await browser.post("/api/auth/login", json={"username": username, "password": password})


def session_hashes(run_db, user_id: int) -> set[str]:
    async def read(db):
        return set((await db.exec(select(Session.token_hash).where(Session.user_id == user_id))).all())

    return run_db(read)


# A request racing its own logout

LOGOUT_ROUNDS = 15


def test_a_request_racing_its_logout_sees_the_user_or_401_and_the_cookie_dies(app, client, user, run_db):
    async def me_after(browser, delay):
        await asyncio.sleep(delay)
        return await browser.get("/api/me")

    async def race():
        outcomes = []
        for i in range(LOGOUT_ROUNDS):
            async with browsers(app, 1) as [browser]:
                assert (await api_log_in(browser)).status_code == 200
                token = browser.cookies["session"]
                # Some just before the logout, some with it, some just after.
                delays = [(i % 5) * 0.001 * k for k in range(4)]
                logout, *mes = await asyncio.gather(
                    browser.post("/api/auth/logout", json={}), *(me_after(browser, delay) for delay in delays)
                )
                # The old cookie, sent again by hand after the logout.
                after = await browser.get("/api/me", headers={"cookie": f"session={token}"})
            outcomes.append((mes, logout, after))
        return outcomes

    for mes, logout, after in client.portal.call(race):
        assert logout.status_code == 204
        for me in mes:
            assert me.status_code in (200, 401), (me.status_code, me.text)
            if me.status_code == 200:
                assert me.json()["username"] == "alice"
            else:
                assert "detail" in me.json()
        assert after.status_code == 401
    assert session_hashes(run_db, user.id) == set()


# One session logged out many times at once (a double-click, a script's retries, several tabs)

CONCURRENT_LOGOUTS = 20


def logout_events(run_db, user_id: int) -> list[AuthEvent]:
    async def read(db):
        statement = select(AuthEvent).where(AuthEvent.kind == Kind.LOGOUT, AuthEvent.user_id == user_id)
        return list((await db.exec(statement)).all())

    return run_db(read)


async def html_logout(browser, cookie: str, token: str) -> httpx2.Response:
    return await browser.post("/auth/logout", data={"csrf_token": token}, headers={"cookie": cookie})


async def api_logout(browser, cookie: str, token: str) -> httpx2.Response:
    return await browser.post("/api/auth/logout", json={}, headers={"cookie": cookie})


@pytest.mark.parametrize("logout", [html_logout, api_logout], ids=["form", "api"])
def test_twenty_logouts_of_one_session_at_once_write_one_logout_event(app, client, user, run_db, logout):
    async def race():
        async with browsers(app, CONCURRENT_LOGOUTS) as tabs:
            assert (await api_log_in(tabs[0])).status_code == 200
            cookie = f"session={tabs[0].cookies['session']}"
            token = csrf_from((await tabs[0].get("/auth/logout")).text)
            for tab in tabs:
                tab.cookies.clear()  # each sends the one cookie by hand, before any answer clears it
            return await asyncio.gather(*(logout(tab, cookie, token) for tab in tabs))

    answers = client.portal.call(race)

    assert {answer.status_code for answer in answers} <= {204, 303}, [a.status_code for a in answers]
    assert len(logout_events(run_db, user.id)) == 1
    assert session_hashes(run_db, user.id) == set()


# A password change racing a login with the old password
#
# The invariant, once both have answered: the user's sessions are exactly the one
# the change gave its own browser. A login that proved the old password either
# ended before the change (its session ended with the others) or failed; no
# session outlives the password it was opened with. Afterwards only the newest
# password opens the account.

PASSWORDS = [PASSWORD] + [f"changed phrase number {i}" for i in range(1, 9)]
# How long the login waits before starting, so rounds cover every overlap of the two.
LOGIN_DELAYS = [0.0, 0.005, 0.01, 0.02, 0.03, 0.04, 0.06, 0.08]


async def change_password(browser, current: str, new: str) -> httpx2.Response:
    token = csrf_from((await browser.get("/account")).text)
    data = {"current_password": current, "new_password": new, "new_password_confirm": new, "csrf_token": token}
    return await browser.post("/account/password", data=data)


async def session_hashes_now(app, user_id: int) -> set[str]:
    async with app.state.authsite.database.sessionmaker() as db:
        return set((await db.exec(select(Session.token_hash).where(Session.user_id == user_id))).all())


def test_a_password_change_racing_a_login_with_the_old_password_leaves_no_old_session(app, client, user):
    async def rounds():
        results = []
        async with browsers(app, 1) as [changer]:
            assert (await api_log_in(changer)).status_code == 200
            for old, new, delay in zip(PASSWORDS, PASSWORDS[1:], LOGIN_DELAYS):
                async with browsers(app, 1) as [racer]:

                    async def login_a_little_later():
                        await asyncio.sleep(delay)
                        return await api_log_in(racer, password=old)

                    change, login = await asyncio.gather(change_password(changer, old, new), login_a_little_later())
                    racer_me = await racer.get("/api/me")
                    left = await session_hashes_now(app, user.id)
                results.append((delay, change, login, racer_me, changer.cookies["session"], left))
        return results

    for delay, change, login, racer_me, changer_token, sessions_left in client.portal.call(rounds):
        assert change.status_code == 303, (delay, change.status_code)
        assert login.status_code in (200, 401), (delay, login.status_code, login.text)
        assert racer_me.status_code == 401, f"a login {delay * 1000:.0f} ms late kept its old-password session"
        assert sessions_left == {tokens.hash_token(changer_token)}, delay

    async def try_every_password():
        async with browsers(app, len(PASSWORDS)) as tries:
            return await asyncio.gather(*(api_log_in(b, password=p) for b, p in zip(tries, PASSWORDS)))

    statuses = [response.status_code for response in client.portal.call(try_every_password)]
    assert statuses == [401] * (len(PASSWORDS) - 1) + [200]


def test_a_login_that_checked_the_old_password_just_before_a_change_keeps_no_session(
    app, client, user, run_db, monkeypatch
):
    # The worst interleaving, forced: the login has checked the old password and
    # is about to record itself when the change commits and answers.
    site = app.state.authsite
    real_verify = site.hasher.verify

    async def race():
        login_checked, change_answered = asyncio.Event(), asyncio.Event()

        async def verify_then_wait_for_the_change(password, stored_hash):
            outcome = await real_verify(password, stored_hash)
            if not login_checked.is_set():  # the racer's login; the change's own check runs freely
                login_checked.set()
                await change_answered.wait()
            return outcome

        async with browsers(app, 2) as [changer, racer]:
            assert (await api_log_in(changer)).status_code == 200
            monkeypatch.setattr(site.hasher, "verify", verify_then_wait_for_the_change)
            login = asyncio.create_task(api_log_in(racer))
            await login_checked.wait()
            change = await change_password(changer, PASSWORD, PASSWORDS[1])
            change_answered.set()
            await login
            return change, login.result(), await racer.get("/api/me"), changer.cookies["session"]

    change, login, racer_me, changer_token = client.portal.call(race)

    assert change.status_code == 303
    assert login.status_code in (200, 401), (login.status_code, login.text)
    assert racer_me.status_code == 401, "a session opened with the old password outlived the change"
    assert session_hashes(run_db, user.id) == {tokens.hash_token(changer_token)}


# Many logins at once

USERS = 20
LOGINS_EACH = 10
CHEAP_HASHES = CryptContext(
    schemes=["argon2"], argon2__type="ID", argon2__memory_cost=64, argon2__time_cost=1, argon2__parallelism=1
)


def test_200_simultaneous_logins_of_20_users_all_succeed(app, client, site, run_db, caplog, monkeypatch):
    caplog.set_level(logging.DEBUG)
    # Cheap hashes: the logins then reach the database closer together than
    # with argon2 at full cost, the harder case for its locks (and seconds faster).
    monkeypatch.setattr(passwords, "CONTEXT", CHEAP_HASHES)

    async def create_users(db):
        password_hash = await site.hasher.hash(PASSWORD)  # one hash for all: the test is the logins
        for i in range(USERS):
            name = f"user{i:02d}"
            db.add(User(username=name, username_key=rules.username_key(name), password_hash=password_hash))
        await db.commit()

    run_db(create_users)
    names = [f"user{i:02d}" for i in range(USERS) for _ in range(LOGINS_EACH)]
    # The test is the database's locks: room in the hashing queue for every login at once (past
    # its usual bound they would be answered 503, as tests/test_login_limits_under_attack.py shows).
    monkeypatch.setattr(site.hasher, "capacity", len(names))

    async def all_at_once():
        async with browsers(app, len(names)) as each:
            return await asyncio.gather(*(api_log_in(browser, name) for browser, name in zip(each, names)))

    responses = client.portal.call(all_at_once)

    assert [response.status_code for response in responses] == [200] * len(names), {
        response.status_code: response.text for response in responses if response.status_code != 200
    }
    assert [response.json()["user"]["username"] for response in responses] == names
    tokens_given = {response.cookies["session"] for response in responses}
    assert len(tokens_given) == len(names)

    async def sessions_by_user(db):
        rows = (await db.exec(select(Session.token_hash, User.username).join(User))).all()
        return {token_hash: username for token_hash, username in rows}

    stored = run_db(sessions_by_user)
    assert set(stored) == {tokens.hash_token(token) for token in tokens_given}
    assert sorted(stored.values()) == sorted(names)
    assert LOCKED not in caplog.text  # messages and tracebacks, caught ones included
    assert not any(LOCKED in response.text for response in responses)
