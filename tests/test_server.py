"""The real server: `python run.py` on a loopback port, as an operator starts it,
and /healthz when the database stops answering."""

import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import httpx2
import pytest
from sqlalchemy.ext.asyncio import create_async_engine

from support import PASSWORD, csrf_from, free_port, stop_process

RUN_PY = Path(__file__).resolve().parents[1] / "run.py"
START_TIMEOUT_SECONDS = 15
STOP_TIMEOUT_SECONDS = 5
# Nothing listens on port 1: connecting fails at once, like a database that is down.
UNREACHABLE_DATABASE_URL = "postgresql+asyncpg://x@127.0.0.1:1/x"


@dataclass
class Server:
    url: str
    data_dir: Path
    env: dict[str, str]


def wait_until_healthy(process: subprocess.Popen, url: str, log: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT_SECONDS
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"run.py exited with {process.returncode}:\n{log.read_text()}")
        try:
            if httpx2.get(f"{url}/healthz", timeout=1).status_code == 200:
                return
        except httpx2.TransportError:
            pass
        time.sleep(0.05)
    pytest.fail(f"run.py did not answer /healthz within {START_TIMEOUT_SECONDS} s:\n{log.read_text()}")


@pytest.fixture
def server(tmp_path, database_url, is_postgres):
    """`python run.py` on a free loopback port with a fresh data dir (and the test
    Postgres database when there is one); stopped by PID afterwards."""
    port, data_dir = free_port(), tmp_path / "data"
    env = {name: value for name, value in os.environ.items() if not name.startswith("AUTHSITE_")}
    env |= {"AUTHSITE_HOST": "127.0.0.1", "AUTHSITE_PORT": str(port), "AUTHSITE_DATA_DIR": str(data_dir)}
    if is_postgres:
        env["AUTHSITE_DATABASE_URL"] = database_url
    log = tmp_path / "server.log"
    with log.open("w") as output:
        process = subprocess.Popen(
            [sys.executable, str(RUN_PY)], cwd=tmp_path, env=env, stdout=output, stderr=subprocess.STDOUT
        )
    try:
        url = f"http://127.0.0.1:{port}"
        wait_until_healthy(process, url, log)
        yield Server(url=url, data_dir=data_dir, env=env)
    finally:
        stop_process(process, timeout=STOP_TIMEOUT_SECONDS)


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
