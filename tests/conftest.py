"""Fixtures: an app on a fresh database per test, a client, users, a logged-in client.

Tests run on a temporary SQLite file by default. With AUTHSITE_TEST_DATABASE_URL
set to a Postgres URL they run against a fresh database on that server instead,
its schema wiped before each test."""

import asyncio
import os
import secrets
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.engine import make_url

from authsite import Settings, accounts, create_app, passwords
from authsite.app import AuthSite
from support import PASSWORD, Clock, log_in

TEST_DATABASE_URL = os.environ.get("AUTHSITE_TEST_DATABASE_URL")
RUN_PY = Path(__file__).resolve().parents[1] / "run.py"
# Every test client comes from one address; tests of other things must not trip
# the rate limits by accident. Throttling tests set the real limits themselves.
GENEROUS_LIMITS = {
    "login_max_failures": 1000,
    "login_ip_max_failures": 1000,
    "signup_max_per_ip": 1000,
    "reset_max_per_ip": 1000,
}
# TestClient's requests carry `Host: testserver`; servers started by tests listen on 127.0.0.1,
# which the default AUTHSITE_ALLOWED_HOSTS allows.
TEST_HOSTS = {"allowed_hosts": "testserver"}


def pytest_configure(config):
    config.addinivalue_line("markers", "sqlite_only: behaviour of the SQLite backend; not collected on Postgres")
    config.addinivalue_line("markers", "postgres_only: behaviour of the Postgres backend; not collected on SQLite")


# `-n auto` (pyproject.toml): one test process per usable core, at most this many. Most of the
# suite's time is tests waiting on servers and browsers they start, so two processes on 2 cores
# took 12:31 against 21:12 for one; past a few, the tests that time servers get crowded.
MOST_TEST_PROCESSES = 4


def pytest_xdist_auto_num_workers(config):
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    return max(1, min(MOST_TEST_PROCESSES, cores))


def pytest_collection_modifyitems(config, items):
    """Backend-specific tests are deselected, not skipped, on the other backend."""
    other = "sqlite_only" if TEST_DATABASE_URL else "postgres_only"
    kept = [item for item in items if other not in item.keywords]
    if len(kept) != len(items):
        config.hook.pytest_deselected(items=[item for item in items if other in item.keywords])
        items[:] = kept


def pytest_sessionfinish(session, exitstatus):
    # Under CI everything must run: a skipped test is a failure there.
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    skipped = len(reporter.stats.get("skipped", [])) if reporter else 0
    if os.environ.get("CI") == "true" and skipped and exitstatus == 0:
        reporter.write_line(f"CI=true: {skipped} test(s) skipped; under CI every test must run", red=True)
        session.exitstatus = 1


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch, tmp_path):
    """No AUTHSITE_* variable or .env of the developer's leaks into a test."""
    for name in list(os.environ):
        if name.startswith("AUTHSITE_") and name != "AUTHSITE_TEST_DATABASE_URL":
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)


@pytest.fixture(autouse=True)
def hashing_in_threads(monkeypatch):
    """Apps made in a test hash in threads of the test's process: the tests that watch the hashing
    (CountingContext, RecordingContext) see it there, and the hundreds of apps the suite makes do
    not each start processes. The served site's worker processes are tested through run.py
    (test_hashing_processes.py) and by every test that starts it."""
    monkeypatch.setattr(passwords, "IN_PROCESSES", False)


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str | None]:
    """A database of our own on the test server, dropped at the end."""
    if not TEST_DATABASE_URL:
        yield None
        return
    server = make_url(Settings(database_url=TEST_DATABASE_URL).database_url)
    name = f"authsite_test_{secrets.token_hex(4)}"
    asyncio.run(_postgres_admin(server, f'CREATE DATABASE "{name}"'))
    try:
        yield server.set(database=name).render_as_string(hide_password=False)
    finally:
        asyncio.run(_postgres_admin(server, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture
def database_url(tmp_path, postgres_url) -> str:
    if postgres_url is None:
        return f"sqlite+aiosqlite:///{tmp_path / 'data' / 'authsite.db'}"
    asyncio.run(_postgres_exec(postgres_url, "DROP SCHEMA public CASCADE; CREATE SCHEMA public"))
    return postgres_url


@pytest.fixture
def is_postgres(database_url) -> bool:
    return database_url.startswith("postgresql")


@pytest.fixture
def make_settings(tmp_path, database_url) -> Callable[..., Settings]:
    def make(**overrides) -> Settings:
        values = {"data_dir": tmp_path / "data", "database_url": database_url, **GENEROUS_LIMITS, **TEST_HOSTS, **overrides}
        return Settings(_env_file=None, **values)

    return make


@pytest.fixture
def settings(make_settings) -> Settings:
    return make_settings()


@pytest.fixture
def app(settings):
    return create_app(settings)


@pytest.fixture
def site(app) -> AuthSite:
    return app.state.authsite


@pytest.fixture
def client(app) -> Iterator[TestClient]:
    with TestClient(app, base_url="http://testserver", follow_redirects=False) as test_client:
        yield test_client


@pytest.fixture
def run_db(client, site) -> Callable[[Callable[..., Awaitable]], object]:
    """Run `await work(db)` on the app's own event loop and database; returns its result."""

    def run(work):
        async def in_app_loop():
            async with site.database.sessionmaker() as db:
                return await work(db)

        return client.portal.call(in_app_loop)

    return run


@pytest.fixture
def make_user(run_db, site):
    def make(username="alice", password=PASSWORD, *, scopes=("authenticated",), email=None, active=True):
        async def create(db):
            user = await accounts.create_user(
                db=db, hasher=site.hasher, username=username, password=password, email=email, scopes=scopes
            )
            if not active:
                user.is_active = False
                db.add(user)
                await db.commit()
            return user

        return run_db(create)

    return make


@pytest.fixture
def user(make_user):
    return make_user()


@pytest.fixture
def cli_environment() -> dict[str, str]:
    """Extra AUTHSITE_* variables for `run_cli`; a test module overrides this to add some."""
    return {}


@pytest.fixture
def run_cli(tmp_path, database_url, cli_environment):
    """Run `python run.py *args` as an operator would, in a clean environment on the test database."""
    env = {name: value for name, value in os.environ.items() if not name.startswith("AUTHSITE_")}
    env |= {"AUTHSITE_DATA_DIR": str(tmp_path / "data"), "AUTHSITE_DATABASE_URL": database_url, **cli_environment}

    def run(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, str(RUN_PY), *args],
            cwd=tmp_path, env=env, input=stdin, capture_output=True, text=True, timeout=60,
        )

    return run


@pytest.fixture
def clock(site) -> Clock:
    """The time the site's authenticator codes are checked at, moved on by the test."""
    site.factors.clock = Clock(time.time())
    return site.factors.clock


@pytest.fixture
def logged_in_client(client, user) -> TestClient:
    response = log_in(client)
    assert response.status_code == 303, response.text
    return client


async def _postgres_admin(server_url, sql: str) -> None:
    await _postgres_exec(server_url.render_as_string(hide_password=False), sql)


async def _postgres_exec(url: str, sql: str) -> None:
    import asyncpg

    dsn = make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()
