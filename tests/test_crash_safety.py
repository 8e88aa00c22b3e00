"""Crash safety: the real server, killed with SIGKILL in the middle of a burst of
sign-ups and logins, then started again on the same data. Whatever it answered
as a success before it died is still there, and the database is intact.

The burst, the kill and the restart happen once for the module (they take seconds);
each test then checks one promise against what was answered."""

import asyncio
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx2
import pytest
from sqlalchemy.engine import make_url

from support import csrf_from, free_port, stop_process

ROOT = Path(__file__).resolve().parents[1]
RUN_PY = ROOT / "run.py"
PASSWORD = "another long phrase 9"
START_TIMEOUT_SECONDS = 15
STOP_TIMEOUT_SECONDS = 5
SIGN_UP_WORKERS = 4
LOGIN_WORKERS = 2
# Kill once this much has been answered, so the site surely holds committed
# rows while more requests are still in flight.
KILL_AFTER_SIGN_UPS = 8
KILL_AFTER_LOGINS = 4
BURST_TIMEOUT_SECONDS = 20
REGULARS = ["regular0", "regular1", "regular2"]  # signed up before the burst; they log in during it


@dataclass
class Server:
    process: subprocess.Popen
    url: str
    log: Path

    def stop(self) -> None:
        stop_process(self.process, timeout=STOP_TIMEOUT_SECONDS)


@dataclass(frozen=True)
class Answer:
    kind: str  # "sign-up" or "login"
    username: str
    status: int
    cookie: str | None  # the session cookie the answer set


@dataclass
class Crash:
    """What the site answered before the kill, and the site started again on the same data."""

    answers: list[Answer] = field(default_factory=list)
    in_flight_at_kill: int = 0
    restarted: Server | None = None
    data_dir: Path | None = None

    def successes(self, kind: str) -> list[Answer]:
        return [answer for answer in self.answers if answer.kind == kind and answer.status == 303]


def start_server(env: dict[str, str], cwd: Path, log: Path) -> Server:
    """`python run.py` on a free loopback port; returns once /healthz answers."""
    port = free_port()
    env = env | {"AUTHSITE_PORT": str(port)}
    with log.open("a") as output:
        process = subprocess.Popen([sys.executable, str(RUN_PY)], cwd=cwd, env=env, stdout=output,
                                   stderr=subprocess.STDOUT)
    server = Server(process, f"http://127.0.0.1:{port}", log)
    deadline = time.monotonic() + START_TIMEOUT_SECONDS
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"run.py exited with {process.returncode}:\n{log.read_text()}")
        try:
            if httpx2.get(f"{server.url}/healthz", timeout=1).status_code == 200:
                return server
        except httpx2.TransportError:
            pass
        time.sleep(0.05)
    server.stop()
    pytest.fail(f"run.py did not answer /healthz within {START_TIMEOUT_SECONDS} s:\n{log.read_text()}")


def sign_up(url: str, username: str) -> Answer:
    with httpx2.Client(base_url=url, follow_redirects=False, timeout=10) as browser:  # its own cookie jar
        page = browser.get("/auth/register")
        if page.status_code != 200:
            return Answer("sign-up", username, page.status_code, None)
        token = csrf_from(page.text)
        form = {"username": username, "password": PASSWORD, "password_confirm": PASSWORD, "csrf_token": token}
        response = browser.post("/auth/register", data=form)
    return Answer("sign-up", username, response.status_code, response.cookies.get("session"))


def log_in(url: str, username: str) -> Answer:
    with httpx2.Client(base_url=url, follow_redirects=False, timeout=10) as browser:
        page = browser.get("/auth/login")
        if page.status_code != 200:
            return Answer("login", username, page.status_code, None)
        token = csrf_from(page.text)
        form = {"username": username, "password": PASSWORD, "csrf_token": token}
        response = browser.post("/auth/login", data=form)
    return Answer("login", username, response.status_code, response.cookies.get("session"))


def who_has(url: str, cookie: str) -> str | None:
    with httpx2.Client(base_url=url, cookies={"session": cookie}, timeout=10) as browser:
        me = browser.get("/api/me")
    return me.json()["username"] if me.status_code == 200 else None


def burst_until_killed(server: Server, crash: Crash) -> None:
    """Sign-ups and logins from several threads; SIGKILL the server while they run."""
    stop, lock = threading.Event(), threading.Lock()
    in_flight = 0

    def work(send, names):
        nonlocal in_flight
        for name in names:
            if stop.is_set():
                return
            with lock:
                in_flight += 1
            try:
                answer = send(server.url, name)
            except httpx2.TransportError:  # the server died under this request
                continue
            else:
                with lock:
                    crash.answers.append(answer)
            finally:
                with lock:
                    in_flight -= 1

    def new_names(worker: int) -> Iterator[str]:
        return (f"burst{worker}n{n}" for n in range(10_000))

    workers = [
        threading.Thread(target=work, args=(sign_up, new_names(w))) for w in range(SIGN_UP_WORKERS)
    ] + [
        threading.Thread(target=work, args=(log_in, (REGULARS[n % len(REGULARS)] for n in range(10_000))))
        for _ in range(LOGIN_WORKERS)
    ]
    for worker in workers:
        worker.start()
    try:
        deadline = time.monotonic() + BURST_TIMEOUT_SECONDS
        while not (len(crash.successes("sign-up")) >= KILL_AFTER_SIGN_UPS
                   and len(crash.successes("login")) >= KILL_AFTER_LOGINS):
            assert time.monotonic() < deadline, f"the burst got too few answers: {crash.answers}"
            time.sleep(0.02)
        with lock:  # no request starts or ends between the kill and the count
            os.kill(server.process.pid, signal.SIGKILL)
            crash.in_flight_at_kill = in_flight
        server.process.wait()
    finally:
        stop.set()
        for worker in workers:
            worker.join()


async def wipe_postgres_schema(url: str) -> None:
    import asyncpg

    dsn = make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute("DROP SCHEMA public CASCADE; CREATE SCHEMA public")
    finally:
        await conn.close()


@pytest.fixture(scope="module")
def crash(tmp_path_factory, postgres_url) -> Iterator[Crash]:
    """Start the site, sign up the regulars, burst, SIGKILL, start it again on the same data."""
    home = tmp_path_factory.mktemp("crash")
    crash = Crash(data_dir=home / "data")
    env = {name: value for name, value in os.environ.items() if not name.startswith("AUTHSITE_")}
    env |= {
        "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
        "AUTHSITE_HOST": "127.0.0.1",
        "AUTHSITE_DATA_DIR": str(crash.data_dir),
        # One client address sends everything here; the limits are not under test.
        "AUTHSITE_SIGNUP_MAX_PER_IP": "100000",
        "AUTHSITE_LOGIN_MAX_FAILURES": "100000",
        "AUTHSITE_LOGIN_IP_MAX_FAILURES": "100000",
    }
    if postgres_url:
        asyncio.run(wipe_postgres_schema(postgres_url))
        env["AUTHSITE_DATABASE_URL"] = postgres_url
    servers = []
    try:
        servers.append(start_server(env, home, home / "server.log"))
        for name in REGULARS:
            assert sign_up(servers[0].url, name).status == 303
        burst_until_killed(servers[0], crash)
        crash.restarted = start_server(env, home, home / "server.log")
        servers.append(crash.restarted)
        yield crash
    finally:
        for server in servers:
            server.stop()


def test_the_server_was_killed_mid_burst(crash):
    assert crash.in_flight_at_kill > 0
    assert len(crash.successes("sign-up")) >= KILL_AFTER_SIGN_UPS
    assert len(crash.successes("login")) >= KILL_AFTER_LOGINS


def test_every_request_answered_in_the_burst_succeeded(crash):
    # Every request was valid: a 5xx, a "database is locked" or a lost race shows here.
    assert [answer for answer in crash.answers if answer.status != 303] == []


def test_every_answered_sign_up_can_log_in_after_the_restart(crash):
    signed_up = crash.successes("sign-up")

    logins = [log_in(crash.restarted.url, answer.username) for answer in signed_up]

    assert [(login.username, login.status) for login in logins] == [(a.username, 303) for a in signed_up]


def test_every_answered_sign_up_is_still_logged_in_after_the_restart(crash):
    signed_up = [answer for answer in crash.successes("sign-up") if answer.cookie]

    holders = [who_has(crash.restarted.url, answer.cookie) for answer in signed_up]

    assert holders == [answer.username for answer in signed_up]


def test_every_answered_login_cookie_still_works_after_the_restart(crash):
    logged_in = crash.successes("login")

    holders = [who_has(crash.restarted.url, answer.cookie) for answer in logged_in]

    assert holders == [answer.username for answer in logged_in]


@pytest.mark.sqlite_only
def test_the_sqlite_file_passes_its_integrity_check_after_the_kill(crash):
    crash.restarted.stop()  # the file is checked at rest

    with sqlite3.connect(crash.data_dir / "authsite.db") as db:
        result = db.execute("PRAGMA integrity_check").fetchall()

    assert result == [("ok",)]
