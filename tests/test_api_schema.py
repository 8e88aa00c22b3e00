"""The JSON API holds to its own OpenAPI document under schemathesis (`--checks all`), against
the real server (`python run.py`), once anonymous and once with the cookie of a real login:
every answer is documented, in the documented shape, and no input gets a 5xx.

Each run is bounded (examples per operation and seconds), so the whole module takes about a
minute and a half; CI runs it as part of `pytest`."""

import subprocess
import sys
from pathlib import Path

import httpx2
import pytest

from support import PASSWORD, running_site

SCHEMATHESIS = Path(sys.executable).with_name("schemathesis")
MAX_EXAMPLES = 40
SECONDS_PER_RUN = 25
LOGOUT = "/api/auth/logout"


@pytest.fixture
def api_server(tmp_path, database_url, run_cli):
    created = run_cli("create-user", "alice", "--password-stdin", stdin=PASSWORD + "\n")
    assert created.returncode == 0, created.stderr
    with running_site(tmp_path, database_url) as (url, _):
        yield url


def session_cookie(url: str) -> str:
    response = httpx2.post(f"{url}/api/auth/login", json={"username": "alice", "password": PASSWORD}, timeout=10)
    assert response.status_code == 200, response.text
    return f"session={response.cookies['session']}"


def schemathesis(url: str, cwd: Path, *options: str) -> subprocess.CompletedProcess:
    command = [
        str(SCHEMATHESIS), "run", f"{url}/openapi.json", "--checks", "all",
        "--max-examples", str(MAX_EXAMPLES), "--max-time", str(SECONDS_PER_RUN), "--seed", "12",
        "--workers", "1", "--request-timeout", "10", "--generation-database", "none", "--no-color", *options,
    ]
    return subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=SECONDS_PER_RUN + 90)


def assert_clean(run: subprocess.CompletedProcess) -> None:
    assert run.returncode == 0, run.stdout[-6000:] + run.stderr[-2000:]
    assert "passed" in run.stdout


def test_an_anonymous_client_finds_the_api_as_documented(api_server, tmp_path):
    assert_clean(schemathesis(api_server, tmp_path))


def test_a_logged_in_client_finds_the_api_as_documented(api_server, tmp_path):
    # The logout would end the session at the first call; it gets a run of its own below.
    assert_clean(schemathesis(api_server, tmp_path, "--header", f"Cookie: {session_cookie(api_server)}",
                              "--exclude-path", LOGOUT))


def test_a_logged_in_clients_logout_is_as_documented(api_server, tmp_path):
    assert_clean(schemathesis(api_server, tmp_path, "--header", f"Cookie: {session_cookie(api_server)}",
                              "--include-path", LOGOUT))
