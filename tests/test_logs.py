"""What `run.py` logs: one JSON object per line on stderr, an audit line per auth
event, a level set by AUTHSITE_LOG_LEVEL, and never a password, token or hash."""

import email.policy
import hashlib
import json
import logging
import os
import secrets
import subprocess
import sys
import time
from dataclasses import dataclass
from email import message_from_bytes
from pathlib import Path

import httpx2
import pytest

from authsite.logs import JsonLineFormatter
from support import PASSWORD, csrf_from, free_port, stop_process

RUN_PY = Path(__file__).resolve().parents[1] / "run.py"
START_TIMEOUT_SECONDS = 30
STOP_TIMEOUT_SECONDS = 10
WAIT_SECONDS = 10
WRONG_PASSWORD = "not the right phrase 7"


@dataclass
class Server:
    url: str
    process: subprocess.Popen
    stderr: Path
    data_dir: Path

    def stop(self) -> None:
        stop_process(self.process, timeout=STOP_TIMEOUT_SECONDS)

    def final_log(self) -> str:
        """Everything it wrote to stderr, once it has stopped (so nothing is still buffered)."""
        self.stop()
        return self.stderr.read_text()

    def records(self) -> list[dict]:
        return [json.loads(line) for line in self.final_log().splitlines()]


def answers_healthz(url: str) -> bool:
    try:
        return httpx2.get(f"{url}/healthz", timeout=1).status_code == 200
    except httpx2.TransportError:
        return False


def server_env(tmp_path, database_url, **variables: str) -> dict[str, str]:
    env = {name: value for name, value in os.environ.items() if not name.startswith("AUTHSITE_")}
    env |= {
        "AUTHSITE_HOST": "127.0.0.1",
        "AUTHSITE_PORT": str(free_port()),
        "AUTHSITE_DATA_DIR": str(tmp_path / "data"),
        "AUTHSITE_DATABASE_URL": database_url,
    }
    return env | {f"AUTHSITE_{name.upper()}": value for name, value in variables.items()}


@pytest.fixture
def start_server(tmp_path, database_url):
    """`start_server(**AUTHSITE_variables)`: `python run.py` on a free loopback port
    and the test database, stderr kept apart; stopped by PID afterwards."""
    started: list[Server] = []

    def start(**variables: str) -> Server:
        env = server_env(tmp_path, database_url, **variables)
        stderr = tmp_path / f"stderr-{env['AUTHSITE_PORT']}.log"
        with stderr.open("w") as errors:
            process = subprocess.Popen(
                [sys.executable, str(RUN_PY)], cwd=tmp_path, env=env,
                stdout=subprocess.DEVNULL, stderr=errors, start_new_session=True,
            )
        server = Server(f"http://127.0.0.1:{env['AUTHSITE_PORT']}", process, stderr, tmp_path / "data")
        started.append(server)
        deadline = time.monotonic() + START_TIMEOUT_SECONDS
        while not answers_healthz(server.url):
            if process.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"run.py did not start ({process.poll()}):\n{stderr.read_text()}")
            time.sleep(0.05)
        return server

    yield start
    for server in started:
        server.stop()


def browser(server: Server) -> httpx2.Client:
    return httpx2.Client(base_url=server.url, follow_redirects=False, timeout=10)


def log_in(browser: httpx2.Client, password: str = PASSWORD) -> None:
    token = csrf_from(browser.get("/auth/login").text)
    response = browser.post("/auth/login", data={"username": "alice", "password": password, "csrf_token": token})
    assert response.status_code == (303 if password == PASSWORD else 401), response.text


def ask_for_a_reset_link(browser: httpx2.Client) -> None:
    token = csrf_from(browser.get("/auth/reset").text)
    assert browser.post("/auth/reset", data={"login": "alice", "csrf_token": token}).status_code == 200


def wait_for(found, what: str):
    deadline = time.monotonic() + WAIT_SECONDS
    while time.monotonic() < deadline:
        if result := found():
            return result
        time.sleep(0.05)
    pytest.fail(f"no {what} within {WAIT_SECONDS} s")


# --- the lines run.py writes


def test_every_line_on_stderr_is_one_json_object(start_server, user):
    server = start_server()
    with browser(server) as visitor:
        log_in(visitor)
        visitor.get("/")
        visitor.get("/no/such/page")

    lines = server.final_log().splitlines()

    assert len(lines) > 5
    for line in lines:
        record = json.loads(line)
        assert {"time", "level", "logger", "message"} <= record.keys(), line


def test_a_login_is_logged_as_an_audit_line(start_server, user):
    server = start_server()
    with browser(server) as visitor:
        log_in(visitor)

    audit = [r for r in server.records() if r["logger"] == "authsite.audit"]

    [login] = [r for r in audit if r["message"] == "login" or r.get("event") == "login"]
    assert login["level"] == "info"
    assert login["user_id"] == user.id
    assert login["ip"] == "127.0.0.1"


def test_a_failed_login_is_logged_with_its_reason(start_server, user):
    server = start_server()
    with browser(server) as visitor:
        log_in(visitor, WRONG_PASSWORD)

    audit = [r for r in server.records() if r["logger"] == "authsite.audit"]

    [failure] = [r for r in audit if r.get("event") == "login_failed"]
    assert failure["reason"] == "bad_password"


def test_at_level_warning_info_lines_are_hidden_but_errors_show(start_server, make_user):
    # Mail to a port where nothing listens: the mail worker logs an error.
    make_user(email="alice@example.com")
    server = start_server(log_level="warning", smtp_url=f"smtp://127.0.0.1:{free_port()}")
    with browser(server) as visitor:
        log_in(visitor)
        visitor.get("/")
    with browser(server) as visitor:
        ask_for_a_reset_link(visitor)
    wait_for(lambda: '"level": "error"' in server.stderr.read_text(), "error line")

    records = server.records()

    assert [r for r in records if r["level"] in ("debug", "info")] == []
    assert [r for r in records if r["logger"] in ("uvicorn.access", "authsite.audit")] == []
    assert any(r["level"] == "error" and r["logger"] == "authsite.mail" for r in records)


@pytest.mark.parametrize("level", ["verbose", "5"])
def test_an_invalid_log_level_stops_the_start_in_one_line(tmp_path, database_url, level):
    env = server_env(tmp_path, database_url, log_level=level)

    result = subprocess.run(
        [sys.executable, str(RUN_PY)], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=30
    )

    assert result.returncode == 2, result.stderr
    assert len(result.stderr.splitlines()) == 1, result.stderr
    assert "AUTHSITE_LOG_LEVEL" in result.stderr
    assert "Traceback" not in result.stderr


# --- secrets stay out


def test_a_reset_token_in_a_requested_path_is_logged_as_a_placeholder(start_server):
    server = start_server()
    token = secrets.token_urlsafe(32)
    assert len(token) == 43

    httpx2.get(f"{server.url}/auth/reset/{token}", timeout=10)

    log = server.final_log()
    assert token not in log
    assert "/auth/reset/[token]" in log


def test_the_log_never_holds_a_password_a_session_token_or_a_hash(start_server, user):
    # At the most talkative level, a failed and a successful login.
    server = start_server(log_level="debug")
    with browser(server) as visitor:
        log_in(visitor, WRONG_PASSWORD)
        log_in(visitor)
        session_token = visitor.cookies["session"]
        assert visitor.get("/account").status_code == 200

    log = server.final_log()

    assert "authsite.audit" in log  # the logins were logged, just without secrets
    for secret in (PASSWORD, WRONG_PASSWORD, session_token, hashlib.sha256(session_token.encode()).hexdigest()):
        assert secret not in log
    assert "$argon2" not in log


def test_a_mailed_reset_link_is_not_logged(start_server, make_user):
    make_user(email="alice@example.com")
    server = start_server()
    with browser(server) as visitor:
        ask_for_a_reset_link(visitor)
    outbox = server.data_dir / "outbox"
    [mail] = wait_for(lambda: list(outbox.glob("*.eml")) if outbox.is_dir() else [], "mail in the outbox")
    body = message_from_bytes(mail.read_bytes(), policy=email.policy.default).get_body(("plain",)).get_content()
    link = next(word for word in body.split() if "/auth/reset/" in word)

    log = server.final_log()

    assert "outbox" in log  # the mail was noted, without its link
    assert link.rsplit("/", 1)[1] not in log


# --- other libraries' lines

# What asyncpg logs while Postgres does not answer: a warning with a multi-line traceback.
ASYNCPG_COMPLAINS = """
import logging.config
from authsite.logs import logging_config

logging.config.dictConfig(logging_config("info"))
try:
    raise TimeoutError("connecting took too long\\nsecond line")
except TimeoutError:
    logging.getLogger("asyncpg.pool").warning("Failed to restore the pool connection floor; retrying", exc_info=True)
logging.getLogger("asyncio").error("Task exception was never retrieved")
logging.getLogger("sqlalchemy.pool.impl.AsyncAdaptedQueuePool").info("below warning: not shown")
"""


def test_a_third_party_librarys_traceback_is_logged_as_json_lines_too():
    result = subprocess.run(
        [sys.executable, "-c", ASYNCPG_COMPLAINS], capture_output=True, text=True, timeout=30
    )

    lines = result.stderr.splitlines()
    assert result.returncode == 0, result.stderr
    assert [json.loads(line)["logger"] for line in lines] == ["asyncpg.pool", "asyncio"], result.stderr
    pool = json.loads(lines[0])
    assert pool["level"] == "warning"
    assert pool["error"].startswith("TimeoutError: connecting took too long")
    assert "<string>" in pool["traceback"]


# --- the formatter


def error_record(message: str = "could not do it") -> logging.LogRecord:
    try:
        raise ValueError("boom\non two lines")
    except ValueError:
        return logging.getLogger("authsite.test").makeRecord(
            "authsite.test", logging.ERROR, __file__, 1, message, (), sys.exc_info()
        )


def test_an_exception_becomes_one_line_with_error_and_traceback_fields():
    line = JsonLineFormatter().format(error_record())

    assert "\n" not in line
    record = json.loads(line)
    assert record["level"] == "error"
    assert record["logger"] == "authsite.test"
    assert record["message"] == "could not do it"
    assert record["error"].startswith("ValueError: boom")
    assert "error_record" in record["traceback"]


def test_a_reset_token_in_a_message_is_redacted():
    token = secrets.token_urlsafe(32)

    line = JsonLineFormatter().format(error_record(f"GET /auth/reset/{token} failed"))

    assert token not in line
    assert "/auth/reset/[token]" in json.loads(line)["message"]


@pytest.mark.parametrize("path", ["/auth/code/", "/auth/verify/", "/auth/email-change/cancel/", "/auth/setup/",
                                  "/api/auth/setup/"])
def test_every_link_mailed_or_printed_keeps_its_token_out_of_the_access_log(path):
    # A sign-in link in a log is a login for whoever reads the log; the others open an address or a change.
    token = secrets.token_urlsafe(32)

    message = json.loads(JsonLineFormatter().format(error_record(f'127.0.0.1 - "GET {path}{token} HTTP/1.1" 200')))

    assert token not in message["message"] and f"{path}[token]" in message["message"]


def test_a_password_in_a_url_is_redacted_from_the_message_and_the_traceback():
    secret = secrets.token_urlsafe(16)
    try:
        raise OSError(f"cannot reach smtps://mailer:{secret}@mail.example:465")
    except OSError:
        record = logging.getLogger("authsite.test").makeRecord(
            "authsite.test", logging.ERROR, __file__, 1, f"no database at postgresql://site:{secret}@db/site",
            (), sys.exc_info(),
        )

    line = JsonLineFormatter().format(record)

    assert secret not in line
    assert "postgresql://site:***@db/site" in json.loads(line)["message"]


def test_extra_fields_become_keys_of_the_line():
    record = logging.getLogger("authsite.audit").makeRecord(
        "authsite.audit", logging.INFO, __file__, 1, "login", (), None, extra={"fields": {"user_id": 7, "ip": "::1"}}
    )

    line = json.loads(JsonLineFormatter().format(record))

    assert line["message"] == "login"
    assert line["user_id"] == 7
    assert line["ip"] == "::1"
