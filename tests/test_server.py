"""The real server: `python run.py` on a loopback port, as an operator starts it,
and /healthz when the database stops answering."""

import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import httpx2
import pytest
from sqlalchemy.ext.asyncio import create_async_engine

from support import PASSWORD, RUN_PY, csrf_from, running_site

# Nothing listens on port 1: connecting fails at once, like a database that is down.
UNREACHABLE_DATABASE_URL = "postgresql+asyncpg://x@127.0.0.1:1/x"


@dataclass
class Server:
    url: str
    data_dir: Path
    env: dict[str, str]


@pytest.fixture
def server(tmp_path, database_url):
    """`python run.py` on a free loopback port with a fresh data dir and the test database;
    stopped by PID afterwards."""
    with running_site(tmp_path, database_url) as (url, env):
        yield Server(url=url, data_dir=tmp_path / "data", env=env)


def test_healthz_is_ok_when_the_database_answers(client):
    response = client.get("/healthz")

    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


def test_healthz_is_503_when_the_database_is_unavailable(client, site, monkeypatch):
    unreachable = create_async_engine(UNREACHABLE_DATABASE_URL)
    monkeypatch.setattr(site.database, "engine", unreachable)

    response = client.get("/healthz")

    assert response.status_code == 503
    assert response.headers["content-type"].startswith("application/json")
    assert response.json()["status"] != "ok"


def test_first_start_creates_the_secret_key_and_database(server, is_postgres):
    assert (server.data_dir / "secret_key").is_file()
    if not is_postgres:
        assert (server.data_dir / "authsite.db").is_file()


def test_the_home_page_is_served(server):
    response = httpx2.get(f"{server.url}/")

    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    assert "<html" in response.text.lower()


def test_a_user_made_on_the_command_line_logs_in_over_http(server, tmp_path):
    created = subprocess.run(
        [sys.executable, str(RUN_PY), "create-user", "bob", "--password-stdin"],
        cwd=tmp_path, env=server.env, input=PASSWORD + "\n", capture_output=True, text=True, timeout=60,
    )
    assert created.returncode == 0, created.stderr

    with httpx2.Client(base_url=server.url, follow_redirects=False, timeout=10) as browser:
        token = csrf_from(browser.get("/auth/login").text)
        login = browser.post("/auth/login", data={"username": "bob", "password": PASSWORD, "csrf_token": token})
        me = browser.get("/api/me")

    assert login.status_code == 303, login.text
    assert me.status_code == 200
    assert me.json()["username"] == "bob"
