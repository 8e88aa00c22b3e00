"""Behind a reverse proxy and on several processes: `run.py` believes X-Forwarded-*
only from AUTHSITE_FORWARDED_ALLOW_IPS, and workers or whole servers sharing one
database share its sessions, logins and logouts alike."""

import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import httpx2
import pytest
from sqlmodel import select

from authsite.models import Session
from support import PASSWORD, csrf_from, free_port, stop_process

RUN_PY = Path(__file__).resolve().parents[1] / "run.py"
START_TIMEOUT_SECONDS = 30
STOP_TIMEOUT_SECONDS = 10
REQUESTS_PER_CHECK = 30
PROXY = "127.0.0.1"  # the test itself plays the proxy, from loopback
CLIENT_IP = "203.0.113.7"  # TEST-NET-3: only ever a header value here, never dialled


@dataclass
class Server:
    url: str
    process: subprocess.Popen
    log: Path

    def log_lines(self) -> list[str]:
        return self.log.read_text().splitlines()


def wait_until(ready, server: Server, what: str) -> None:
    deadline = time.monotonic() + START_TIMEOUT_SECONDS
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            pytest.fail(f"run.py exited with {server.process.returncode}:\n{server.log.read_text()}")
        if ready():
            return
        time.sleep(0.05)
    pytest.fail(f"run.py: no {what} within {START_TIMEOUT_SECONDS} s:\n{server.log.read_text()}")


def answers_healthz(url: str) -> bool:
    try:
        return httpx2.get(f"{url}/healthz", timeout=1).status_code == 200
    except httpx2.TransportError:
        return False


@pytest.fixture
def start_server(tmp_path, database_url):
    """`start_server(*args, **AUTHSITE_variables)`: `python run.py *args` on a free
    loopback port and the test database; every one is stopped by PID afterwards."""
    started: list[subprocess.Popen] = []

    def start(*args: str, workers: int = 1, **variables: str) -> Server:
        port = free_port()
        env = {name: value for name, value in os.environ.items() if not name.startswith("AUTHSITE_")}
        env |= {
            "AUTHSITE_HOST": "127.0.0.1",
            "AUTHSITE_PORT": str(port),
            "AUTHSITE_DATA_DIR": str(tmp_path / "data"),
            "AUTHSITE_DATABASE_URL": database_url,
        }
        env |= {f"AUTHSITE_{name.upper()}": value for name, value in variables.items()}
        log = tmp_path / f"server-{port}.log"
        with log.open("w") as output:
            process = subprocess.Popen(
                [sys.executable, str(RUN_PY), *args],
                cwd=tmp_path, env=env, stdout=output, stderr=subprocess.STDOUT, start_new_session=True,
            )
        started.append(process)
        server = Server(url=f"http://127.0.0.1:{port}", process=process, log=log)
        wait_until(lambda: answers_healthz(server.url), server, "answer on /healthz")
        # Until every worker has started, one worker would answer everything.
        wait_until(lambda: started_workers(server) >= workers, server, f"{workers} workers")
        return server

    yield start
    for process in started:
        stop_process(process, timeout=STOP_TIMEOUT_SECONDS)


def started_workers(server: Server) -> int:
    return sum("Application startup complete" in line for line in server.log_lines())


def session_rows(run_db, user) -> list[Session]:
    async def rows(db):
        return (await db.exec(select(Session).where(Session.user_id == user.id))).all()

    return run_db(rows)


def api_log_in(url: str, **headers: str) -> httpx2.Response:
    response = httpx2.post(
        f"{url}/api/auth/login", json={"username": "alice", "password": PASSWORD}, headers=headers, timeout=10
    )
    assert response.status_code == 200, response.text
    return response


def set_cookie_headers(response: httpx2.Response) -> dict[str, str]:
    """Each Set-Cookie header, raw, by cookie name."""
    return {raw.partition("=")[0]: raw for raw in response.headers.get_list("set-cookie")}


def cookie_value(raw_set_cookie: str) -> str:
    return raw_set_cookie.partition("=")[2].partition(";")[0]


def cookie_flags(raw_set_cookie: str) -> set[str]:
    return {part.strip().lower() for part in raw_set_cookie.split(";")[1:]}


def who_is(url: str, cookie: str, **headers: str) -> str | None:
    """The username /api/me sees for `cookie`, asked on a connection of its own."""
    with httpx2.Client(timeout=10) as fresh:
        me = fresh.get(f"{url}/api/me", headers={"Cookie": cookie, "Connection": "close", **headers})
    if me.status_code == 401:
        return None
    assert me.status_code == 200, me.text
    return me.json()["username"]


def run_py_refusing(tmp_path, *args: str, **variables: str) -> subprocess.CompletedProcess:
    """`python run.py *args`, expected to stop before serving (on loopback, should it not)."""
    env = {name: value for name, value in os.environ.items() if not name.startswith("AUTHSITE_")}
    env |= {
        "AUTHSITE_HOST": "127.0.0.1",
        "AUTHSITE_PORT": str(free_port()),
        "AUTHSITE_DATA_DIR": str(tmp_path / "data"),
    }
    env |= {f"AUTHSITE_{name.upper()}": value for name, value in variables.items()}
    return subprocess.run(
        [sys.executable, str(RUN_PY), *args], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=30
    )


# --- X-Forwarded-* only from a trusted proxy


def test_without_a_trusted_proxy_forwarded_headers_from_a_client_change_nothing(start_server, user, run_db):
    server = start_server()

    login = api_log_in(server.url, **{"X-Forwarded-For": CLIENT_IP, "X-Forwarded-Proto": "https"})

    [row] = session_rows(run_db, user)
    assert row.ip == "127.0.0.1"
    cookies = set_cookie_headers(login)
    assert "session" in cookies
    assert "__Host-session" not in cookies
    assert "secure" not in cookie_flags(cookies["session"])


def test_a_trusted_proxy_tells_the_client_ip(start_server, user, run_db):
    server = start_server(forwarded_allow_ips=PROXY)

    api_log_in(server.url, **{"X-Forwarded-For": CLIENT_IP})

    [row] = session_rows(run_db, user)
    assert row.ip == CLIENT_IP


def test_a_trusted_proxy_over_https_gets_a_secure_host_cookie_that_works(start_server, user):
    server = start_server(forwarded_allow_ips=PROXY)
    https = {"X-Forwarded-Proto": "https"}

    login = api_log_in(server.url, **https)

    cookies = set_cookie_headers(login)
    assert "session" not in cookies
    assert {"secure", "httponly", "path=/"} <= cookie_flags(cookies["__Host-session"])
    # A cookie jar would not send a Secure cookie over plain http; the proxy
    # in front would, so the test hands it over itself.
    token = cookie_value(cookies["__Host-session"])
    assert who_is(server.url, f"__Host-session={token}", **https) == "alice"


def test_a_client_cannot_claim_https_to_a_server_behind_a_trusted_proxy_on_another_address(start_server, user):
    # Trusting some other proxy does not make loopback (this client) trusted.
    server = start_server(forwarded_allow_ips="192.0.2.1")

    login = api_log_in(server.url, **{"X-Forwarded-Proto": "https"})

    assert "secure" not in cookie_flags(set_cookie_headers(login)["session"])


@pytest.mark.parametrize("value", ["not-an-ip", "127.0.0.1,nonsense"])
def test_an_invalid_forwarded_allow_ips_stops_the_start_in_one_line(tmp_path, value):
    result = run_py_refusing(tmp_path, forwarded_allow_ips=value)

    assert result.returncode == 2, result.stderr
    assert len(result.stderr.splitlines()) == 1, result.stderr
    assert "AUTHSITE_FORWARDED_ALLOW_IPS" in result.stderr
    assert "Traceback" not in result.stderr


def untrusted_proxy_warnings(server: Server) -> list[str]:
    return [line for line in server.log_lines() if "X-Forwarded-For" in line and '"warning"' in line]


def test_a_proxy_on_loopback_that_is_not_trusted_is_warned_about_once(start_server, user):
    server = start_server()

    api_log_in(server.url, **{"X-Forwarded-For": CLIENT_IP})
    api_log_in(server.url, **{"X-Forwarded-For": CLIENT_IP})

    [warning] = untrusted_proxy_warnings(server)
    assert "AUTHSITE_FORWARDED_ALLOW_IPS=127.0.0.1" in warning


def test_a_trusted_proxy_on_loopback_is_not_warned_about(start_server, user):
    server = start_server(forwarded_allow_ips=PROXY)

    api_log_in(server.url, **{"X-Forwarded-For": CLIENT_IP})
    api_log_in(server.url, **{"X-Forwarded-For": CLIENT_IP})

    assert untrusted_proxy_warnings(server) == []


# --- several workers, one database


def test_every_worker_sees_a_login_and_then_the_logout(start_server, user):
    server = start_server("--workers", "2", workers=2)
    token = api_log_in(server.url).cookies["session"]
    cookie = f"session={token}"

    seen_logged_in = {who_is(server.url, cookie) for _ in range(REQUESTS_PER_CHECK)}
    logout = httpx2.post(f"{server.url}/api/auth/logout", json={}, headers={"Cookie": cookie}, timeout=10)
    seen_logged_out = {who_is(server.url, cookie) for _ in range(REQUESTS_PER_CHECK)}

    assert seen_logged_in == {"alice"}
    assert logout.status_code == 204
    assert seen_logged_out == {None}


# (plain `run.py --workers 2` is the sharing test above)
@pytest.mark.parametrize(
    "args", [["serve", "--workers", "2"], ["--workers", "2", "serve"]], ids=["serve --workers 2", "--workers 2 serve"]
)
def test_the_workers_option_starts_that_many_workers(start_server, args):
    server = start_server(*args)

    # uvicorn's supervisor says this before it starts the workers; one process never does.
    assert any("Started parent process" in line for line in server.log_lines())
    wait_until(lambda: started_workers(server) == 2, server, "2 workers")


@pytest.mark.parametrize("value", ["0", "x"])
def test_a_bad_workers_count_is_a_usage_error(tmp_path, value):
    result = run_py_refusing(tmp_path, "--workers", value)

    assert result.returncode == 2, result.stderr
    assert "--workers" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "data").exists()


# --- two servers, one database


def revoke_through_account_page(url: str, cookie: str, session_id: int) -> httpx2.Response:
    with httpx2.Client(base_url=url, headers={"Cookie": cookie}, timeout=10) as browser:
        token = csrf_from(browser.get("/account").text)
        return browser.post(f"/account/sessions/{session_id}/revoke", data={"csrf_token": token})


def log_out(url: str, cookie: str, session_id: int) -> httpx2.Response:
    return httpx2.post(f"{url}/api/auth/logout", json={}, headers={"Cookie": cookie}, timeout=10)


@pytest.mark.parametrize("end_session", [log_out, revoke_through_account_page], ids=["logout", "revoke"])
def test_a_session_ended_through_one_server_is_refused_by_the_other_at_once(start_server, user, run_db, end_session):
    server_a, server_b = start_server(), start_server()
    cookie = f"session={api_log_in(server_a.url).cookies['session']}"
    assert who_is(server_b.url, cookie) == "alice"
    [row] = session_rows(run_db, user)

    ended = end_session(server_b.url, cookie, row.id)

    assert ended.status_code in (204, 303), ended.text
    assert who_is(server_a.url, cookie) is None
    assert session_rows(run_db, user) == []
