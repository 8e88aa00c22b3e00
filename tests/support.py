"""Helpers tests share: what a browser does to fill in and send our forms."""

import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path

import httpx2
from fastapi.testclient import TestClient
from sqlalchemy import event

PASSWORD = "correct horse battery"
CSRF_FIELD = re.compile(r'name="csrf_token" value="([^"]+)"')


def csrf_from(html: str) -> str:
    match = CSRF_FIELD.search(html)
    assert match, "page has no csrf_token field"
    return match.group(1)


def form_token(client: TestClient, path: str = "/auth/login") -> str:
    """The csrf_token a visitor's browser would find in the form at `path`."""
    return csrf_from(client.get(path).text)


def log_in(client: TestClient, username="alice", password=PASSWORD, *, remember=False, next_path=None):
    data = {"username": username, "password": password, "csrf_token": form_token(client)}
    if remember:
        data["remember"] = "on"
    if next_path is not None:
        data["next"] = next_path
    return client.post("/auth/login", data=data)


class FormPage(HTMLParser):
    """A rendered page as a browser reads its forms: inputs, labels, buttons,
    links, and the error message announced for each invalid field."""

    def __init__(self, html: str):
        super().__init__()
        self.inputs: dict[str, dict[str, str]] = {}
        self.label_targets: set[str] = set()
        self.buttons: list[dict[str, str]] = []
        self.links: list[str] = []
        self.texts_by_id: dict[str, str] = {}
        self._text_of: str | None = None
        self.feed(html)

    def handle_starttag(self, tag, attrs):
        attributes = {name: value or "" for name, value in attrs}
        if tag == "input" and "name" in attributes:
            self.inputs[attributes["name"]] = attributes
        elif tag == "label" and "for" in attributes:
            self.label_targets.add(attributes["for"])
        elif tag == "button":
            self.buttons.append(attributes)
        elif tag == "a" and "href" in attributes:
            self.links.append(attributes["href"])
        if "id" in attributes:
            self._text_of = attributes["id"]
            self.texts_by_id[self._text_of] = ""

    def handle_data(self, data):
        if self._text_of is not None:
            self.texts_by_id[self._text_of] += data

    def handle_endtag(self, tag):
        self._text_of = None

    def error_for(self, field: str) -> str | None:
        """The message shown and announced for `field`, if it is marked invalid."""
        attributes = self.inputs[field]
        if attributes.get("aria-invalid") != "true":
            return None
        error_id = f"{attributes['id']}-error"
        assert error_id in attributes.get("aria-describedby", "").split()
        return self.texts_by_id.get(error_id, "").strip()

    def errors(self) -> dict[str, str]:
        return {name: message for name in self.inputs if (message := self.error_for(name))}


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now (tests serve only on loopback)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def stop_process(process: subprocess.Popen, *, timeout: float = 10) -> None:
    """Stop a server a test started, by its PID: SIGTERM, then SIGKILL after `timeout`. One started
    in a session of its own (`start_new_session=True`, say uvicorn and its workers) goes with its group."""
    if process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        if os.getpgid(process.pid) == process.pid:
            os.killpg(process.pid, signal.SIGKILL)
        else:
            process.kill()
        process.wait()


class CountingContext:
    """Stands in for passwords.CONTEXT (as in test_passwords.py) and counts the verifies that run."""

    def __init__(self, real):
        self._real = real
        self._lock = threading.Lock()
        self.verifies = 0

    def __getattr__(self, name):
        method = getattr(self._real, name)
        if name not in ("verify", "verify_and_update"):
            return method

        def counted(*args, **kwargs):
            with self._lock:
                self.verifies += 1
            return method(*args, **kwargs)

        return counted


@contextmanager
def statements_sent(site):
    """(SQL, parameters) of every statement the site sends through its engines while the block
    runs: the async engine's and the one `Database.run` writes through (the same on Postgres)."""
    sent: list[tuple[str, object]] = []

    def record(conn, cursor, statement, parameters, context, executemany):
        sent.append((statement, parameters))

    engines = {site.database.engine.sync_engine, site.database.run_engine}
    for engine in engines:
        event.listen(engine, "before_cursor_execute", record)
    try:
        yield sent
    finally:
        for engine in engines:
            event.remove(engine, "before_cursor_execute", record)


RUN_PY = Path(__file__).resolve().parents[1] / "run.py"
START_TIMEOUT_SECONDS = 15


def run_py_environment(data_dir: Path, database_url: str | None, port: int, **variables: str) -> dict[str, str]:
    """The environment `python run.py` gets in tests: none of the developer's AUTHSITE_* variables,
    a free loopback port, the test's data dir and database, and `variables` (AUTHSITE_ + upper-cased)."""
    env = {name: value for name, value in os.environ.items() if not name.startswith("AUTHSITE_")}
    env |= {"AUTHSITE_HOST": "127.0.0.1", "AUTHSITE_PORT": str(port), "AUTHSITE_DATA_DIR": str(data_dir)}
    if database_url:
        env["AUTHSITE_DATABASE_URL"] = database_url
    return env | {f"AUTHSITE_{name.upper()}": value for name, value in variables.items()}


def wait_until_healthy(process: subprocess.Popen, url: str, log: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT_SECONDS
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"run.py exited with {process.returncode}:\n{log.read_text()}")
        try:
            if httpx2.get(f"{url}/healthz", timeout=1).status_code == 200:
                return
        except httpx2.TransportError:
            pass
        time.sleep(0.05)
    raise AssertionError(f"run.py did not answer /healthz within {START_TIMEOUT_SECONDS} s:\n{log.read_text()}")


@contextmanager
def running_site(tmp_path: Path, database_url: str | None, **variables: str):
    """`python run.py` on a free 127.0.0.1 port until the block ends, then stopped by its PID.
    Yields (url, env) once /healthz answers; its log is tmp_path / "server.log"."""
    with running_server(tmp_path, database_url, **variables) as (url, env, _):
        yield url, env


@contextmanager
def running_server(tmp_path: Path, database_url: str | None, **variables: str):
    """As running_site, and the server's process too: (url, env, process)."""
    port = free_port()
    env = run_py_environment(tmp_path / "data", database_url, port, **variables)
    log = tmp_path / "server.log"
    with log.open("w") as output:
        process = subprocess.Popen([sys.executable, str(RUN_PY)], cwd=tmp_path, env=env, stdout=output,
                                   stderr=subprocess.STDOUT)
    try:
        url = f"http://127.0.0.1:{port}"
        wait_until_healthy(process, url, log)
        yield url, env, process
    finally:
        stop_process(process)


# Second factors: what a person does with an authenticator app, on the pages.

SETUP_FIELD = re.compile(r'name="setup" value="([^"]+)"')
SETUP_KEY = re.compile(r'<code class="secret" id="setup-key">([A-Z2-7 ]+)</code>')
RECOVERY_CODE = re.compile(r'<code class="recovery-code">([0-9a-z-]+)</code>')


class Clock:
    """The time the site's second factors see (`site.factors.clock`), moved on by the test."""

    def __init__(self, now: float):
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@dataclass
class Authenticator:
    """The app on the user's phone: its secret, and the recovery codes saved at setup."""

    secret: str
    recovery_codes: list[str]
    clock: Clock

    def code(self, *, steps_ahead: int = 0) -> str:
        from authsite.factors import totp

        return totp.code_at(self.secret, self.clock.now + 30 * steps_ahead)

    def next_code(self) -> str:
        """The code of the next 30 s step, which the site takes once a step has been used (its clock moves on)."""
        self.clock.advance(30)
        return self.code()


def setup_page(client: TestClient) -> str:
    """Press "Set up an authenticator app" on the security page; the setup page's HTML."""
    token = csrf_from(client.get("/account/security").text)
    response = client.post("/account/security/totp", data={"csrf_token": token})
    assert response.status_code == 200, response.text
    return response.text


def turn_on_totp(client: TestClient, clock: Clock) -> Authenticator:
    """Set up an authenticator app as a person would: scan (read the key), type the code, save the codes."""
    page = setup_page(client)
    secret = SETUP_KEY.search(page).group(1).replace(" ", "")
    from authsite.factors import totp

    response = client.post("/account/security/totp/confirm", data={
        "csrf_token": csrf_from(page), "setup": SETUP_FIELD.search(page).group(1), "code": totp.code_at(secret, clock.now),
    })
    assert response.status_code == 200, response.text
    codes = RECOVERY_CODE.findall(response.text)
    assert len(codes) == 10
    return Authenticator(secret, codes, clock)


def second_step(client: TestClient, code: str, *, next_path: str | None = None):
    """Type `code` on the second-step page (or, without a pending login, send it as if one were there)."""
    page = client.get("/auth/mfa")
    token = csrf_from(page.text if page.status_code == 200 else client.get("/auth/login").text)
    data = {"code": code, "csrf_token": token}
    if next_path is not None:
        data["next"] = next_path
    return client.post("/auth/mfa", data=data)


@contextmanager
def site_of_its_own(settings, *usernames: str, password: str = PASSWORD):
    """A site started with `settings` (a test's own limits or policy), with these users; yields
    (client, site), its second factors on a `Clock` the test moves."""
    from authsite import accounts, create_app

    app = create_app(settings)
    with TestClient(app, base_url="http://testserver", follow_redirects=False) as client:
        site = app.state.authsite
        site.factors.clock = Clock(time.time())

        async def create():
            async with site.database.sessionmaker() as db:
                for name in usernames:
                    await accounts.create_user(db=db, hasher=site.hasher, username=name, password=password)

        client.portal.call(create)
        yield client, site


def confirm_email(run_db, user_id: int | None = None) -> None:
    """Mark the address of `user_id` (of every user, if None) as proved, as its verify link would."""
    from sqlalchemy import update

    from authsite.models import User, utcnow

    async def confirm(db):
        statement = update(User) if user_id is None else update(User).where(User.id == user_id)
        await db.exec(statement.values(email_confirmed_at=utcnow()))
        await db.commit()

    run_db(confirm)
