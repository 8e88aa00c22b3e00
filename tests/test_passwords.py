"""Passwords: argon2id at OWASP's floor, hashed off the event loop a bounded number at a
time, upgraded at login, the same work for unknown users, never truncated, and odd input
a plain failed login."""

import asyncio
import json
import re
import threading
import time

import pytest
from passlib.context import CryptContext
from sqlmodel import select

from authsite import accounts, passwords
from authsite.models import User
from support import PASSWORD, log_in

JSON = {"content-type": "application/json"}
ARGON2_HASH = re.compile(r"\$(?P<type>argon2\w+)\$v=19\$m=(?P<m>\d+),t=(?P<t>\d+),p=(?P<p>\d+)\$[^$]+\$[^$]+")
VERIFY_METHODS = ("verify", "verify_and_update")


class RecordingContext:
    """Stands in for passwords.CONTEXT: does the real work and notes each call's
    method, thread and hash argument, and how many ran at the same time."""

    def __init__(self, real: CryptContext, *, delay: float = 0.0):
        self._real = real
        self._delay = delay
        self._lock = threading.Lock()
        self._running = 0
        self.peak = 0
        self.calls: list[tuple[str, str, tuple]] = []

    def __getattr__(self, name):
        method = getattr(self._real, name)
        if name not in ("hash", *VERIFY_METHODS):
            return method

        def recorded(*args, **kwargs):
            with self._lock:
                self.calls.append((name, threading.current_thread().name, args))
                self._running += 1
                self.peak = max(self.peak, self._running)
            try:
                if self._delay:
                    time.sleep(self._delay)  # keeps calls long enough to overlap if allowed to
                return method(*args, **kwargs)
            finally:
                with self._lock:
                    self._running -= 1

        return recorded

    def threads(self) -> set[str]:
        return {thread for _, thread, _ in self.calls}

    def verifies(self) -> list[tuple]:
        return [args for name, _, args in self.calls if name in VERIFY_METHODS]


@pytest.fixture
def recording(monkeypatch) -> RecordingContext:
    context = RecordingContext(passwords.CONTEXT)
    monkeypatch.setattr(passwords, "CONTEXT", context)
    return context


def argon2_parameters(stored_hash: str) -> dict:
    match = ARGON2_HASH.fullmatch(stored_hash)
    assert match, f"not a passlib argon2 hash: {stored_hash!r}"
    return {"type": match["type"], "m": int(match["m"]), "t": int(match["t"]), "p": int(match["p"])}


def stored_hash(run_db, username: str = "alice") -> str:
    async def read(db):
        return (await db.exec(select(User.password_hash).where(User.username == username))).one()

    return run_db(read)


def write_hash(run_db, new_hash: str, username: str = "alice") -> None:
    async def write(db):
        user = (await db.exec(select(User).where(User.username == username))).one()
        user.password_hash = new_hash
        db.add(user)
        await db.commit()

    run_db(write)


def api_login(client, password: str, username: str = "alice"):
    # json.dumps escapes a lone surrogate as "\ud800", exactly what a script could send.
    body = json.dumps({"username": username, "password": password})
    return client.post("/api/auth/login", content=body, headers=JSON)


def loop_thread_name(client) -> str:
    return client.portal.call(lambda: threading.current_thread().name)


def test_stored_hash_is_argon2id_at_owasp_minimum(user, run_db):
    stored = stored_hash(run_db)
    params = argon2_parameters(stored)
    assert params["type"] == "argon2id"
    assert params["m"] >= 19456 and params["t"] >= 2 and params["p"] == 1
    assert PASSWORD not in stored


def test_login_verifies_on_a_hash_worker_not_the_event_loop(client, user, recording):
    assert log_in(client).status_code == 303
    assert recording.verifies(), "login did not verify the password through passwords.CONTEXT"
    assert all(name.startswith("authsite-hash") for name in recording.threads()), recording.threads()
    assert loop_thread_name(client) not in recording.threads()


def test_creating_a_user_hashes_on_a_hash_worker(client, recording, make_user):
    make_user("bob")
    assert [name for name, _, _ in recording.calls] == ["hash"]
    assert all(name.startswith("authsite-hash") for name in recording.threads()), recording.threads()


def test_unknown_user_login_hashes_off_the_event_loop_even_the_first_time(client, recording):
    # As in a freshly started process: the cached dummy hash has not been computed yet.
    dummy_hash = getattr(passwords, "_dummy_hash", None)
    if hasattr(dummy_hash, "cache_clear"):
        dummy_hash.cache_clear()
    assert log_in(client, username="nobody").status_code == 401
    assert recording.calls
    assert loop_thread_name(client) not in recording.threads(), recording.calls


def test_no_more_than_the_configured_number_of_hashes_run_at_once(client, user, site, run_db, monkeypatch):
    stored = stored_hash(run_db)
    context = RecordingContext(passwords.CONTEXT, delay=0.02)
    monkeypatch.setattr(passwords, "CONTEXT", context)
    attempts = site.hasher.workers * 4

    async def many_logins_at_once():
        return await asyncio.gather(*(site.hasher.verify(PASSWORD, stored) for _ in range(attempts)))

    results = client.portal.call(many_logins_at_once)
    assert [matches for matches, _ in results] == [True] * attempts
    assert len(context.verifies()) == attempts
    assert 1 <= context.peak <= site.hasher.workers


@pytest.mark.parametrize(("cpus", "threads"), [(1, 1), (2, 1), (4, 3), (16, 15)])
def test_hashing_leaves_one_cpu_to_the_event_loop(monkeypatch, cpus, threads):
    monkeypatch.setattr(passwords.os, "sched_getaffinity", lambda pid: set(range(cpus)), raising=False)

    hasher = passwords.PasswordHasher()
    try:
        assert hasher.workers == threads
    finally:
        hasher.close()


def test_login_upgrades_an_outdated_hash(client, user, run_db):
    weak = CryptContext(
        schemes=["argon2"], argon2__type="ID", argon2__memory_cost=1024, argon2__time_cost=1, argon2__parallelism=1
    )
    outdated = weak.hash(PASSWORD)
    write_hash(run_db, outdated)

    assert log_in(client).status_code == 303

    upgraded = stored_hash(run_db)
    assert upgraded != outdated
    params = argon2_parameters(upgraded)
    assert params["type"] == "argon2id" and params["m"] >= 19456 and params["t"] >= 2 and params["p"] == 1
    assert passwords.CONTEXT.verify(PASSWORD, upgraded)


def test_a_rehash_never_undoes_a_password_change_made_while_the_login_was_hashing(
    client, user, site, run_db, monkeypatch
):
    weak = CryptContext(
        schemes=["argon2"], argon2__type="ID", argon2__memory_cost=1024, argon2__time_cost=1, argon2__parallelism=1
    )
    write_hash(run_db, weak.hash(PASSWORD))  # outdated: a right password would be rehashed
    changed = passwords.CONTEXT.hash("a different password chosen meanwhile")
    real_verify = site.hasher.verify

    async def verify_while_the_password_changes(password, stored_hash):
        outcome = await real_verify(password, stored_hash)
        async with site.database.sessionmaker() as other:  # the change commits while the login hashes
            await accounts.store_password_hash(db=other, user_id=user.id, password_hash=changed)
            await other.commit()
        return outcome

    monkeypatch.setattr(site.hasher, "verify", verify_while_the_password_changes)

    assert log_in(client).status_code == 401
    assert stored_hash(run_db) == changed


def test_a_login_holds_no_database_connection_while_it_hashes(client, user, site, monkeypatch):
    checked_out_during_hash = []
    real_verify = site.hasher.verify

    async def verify_and_look(password, stored_hash):
        checked_out_during_hash.append(site.database.engine.pool.checkedout())
        return await real_verify(password, stored_hash)

    monkeypatch.setattr(site.hasher, "verify", verify_and_look)
    assert log_in(client).status_code == 303
    assert checked_out_during_hash == [0]


def test_unknown_username_costs_one_verify_like_a_wrong_password(client, user, run_db, recording):
    assert log_in(client, password="not the password").status_code == 401
    wrong_password = recording.verifies()
    recording.calls.clear()

    assert log_in(client, username="nobody", password="not the password").status_code == 401
    unknown_user = recording.verifies()

    assert len(wrong_password) == len(unknown_user) == 1
    # The same work: the unknown user's verify runs against a hash of the same strength.
    dummy_hash = unknown_user[0][1]
    assert argon2_parameters(dummy_hash) == argon2_parameters(stored_hash(run_db))


@pytest.mark.parametrize(
    "password",
    ["x" * 5000, "pass\x00word!", "\ud800 lone surrogate", "\udfff"],
    ids=["over-long", "nul", "lone-surrogate", "lone-low-surrogate"],
)
def test_odd_password_is_a_plain_failed_api_login(client, user, password):
    expected = api_login(client, "a wrong password")
    assert expected.status_code == 401

    response = api_login(client, password)

    assert response.status_code == 401, response.text
    assert response.json() == expected.json()
    assert "session" not in response.cookies


@pytest.mark.parametrize("password", ["x" * 5000, "pass\x00word!"], ids=["over-long", "nul"])
def test_odd_password_is_a_plain_failed_form_login(client, user, password):
    response = log_in(client, password=password)
    assert response.status_code == 401
    assert "Wrong username or password" in response.text
    assert "session" not in response.cookies


def test_a_trailing_nul_does_not_open_the_account(client, user):
    assert api_login(client, PASSWORD + "\x00").status_code == 401
    assert log_in(client, password=PASSWORD + "\x00").status_code == 401
    assert api_login(client, PASSWORD).status_code == 200


def test_a_password_ending_in_nul_opens_only_with_the_nul(client, make_user):
    make_user("bob", password=PASSWORD + "\x00")
    assert api_login(client, PASSWORD, username="bob").status_code == 401
    assert api_login(client, PASSWORD + "\x00", username="bob").status_code == 200


def test_long_passwords_are_never_truncated(client, make_user):
    password = ("a long passphrase " * 60)[:1023] + "!"
    assert len(password) == 1024
    make_user("bob", password=password)

    for near_miss in (password[:-1], password[:-1] + "?", password[:1000], password[:72]):
        assert api_login(client, near_miss, username="bob").status_code == 401, len(near_miss)
    assert api_login(client, password, username="bob").status_code == 200


def test_a_password_over_the_limit_is_refused_not_truncated(client, make_user):
    with pytest.raises(accounts.AccountError) as refused:
        make_user("bob", password="x" * 1025)
    assert refused.value.field == "password"
