"""Slow and idle clients against the real server (`python run.py` with the common 1,024 file limit):
a socket that sends no complete request head within seconds is closed, connections past the
cap get a 503 at once instead of starving accept(), and the log stays short and JSON."""

import json
import os
import resource
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import httpx2
import pytest

from authsite.serving import (
    BODY_TIMEOUT_SECONDS,
    FD_RESERVE,
    HEAD_TIMEOUT_SECONDS,
    MAX_CONNECTIONS,
    REFUSED_LINGER_MAX,
    limits_for,
)
from support import free_port, stop_process

RUN_PY = Path(__file__).resolve().parents[1] / "run.py"
START_TIMEOUT_SECONDS = 30
FILE_LIMIT = 1024
IDLE_SOCKETS = 1100  # more than the server may open
PROMPT_SECONDS = 2
MAX_LOG_LINES = 20  # the start, a few warnings and the shutdown


@dataclass
class Server:
    url: str
    port: int
    log: Path

    def log_lines(self) -> list[str]:
        return self.log.read_text().splitlines()


def small_file_limit() -> None:
    resource.setrlimit(resource.RLIMIT_NOFILE, (FILE_LIMIT, FILE_LIMIT))


@pytest.fixture
def server(tmp_path, database_url):
    """`python run.py` on a free loopback port, run with soft and hard file limits of 1,024."""
    port = free_port()
    env = {name: value for name, value in os.environ.items() if not name.startswith("AUTHSITE_")}
    env |= {
        "AUTHSITE_HOST": "127.0.0.1",
        "AUTHSITE_PORT": str(port),
        "AUTHSITE_DATA_DIR": str(tmp_path / "data"),
        "AUTHSITE_DATABASE_URL": database_url,
    }
    log = tmp_path / "server.log"
    # The log is stderr; stdout holds the start's plain lines for a person (what it created, the address).
    with log.open("w") as output:
        process = subprocess.Popen(
            [sys.executable, str(RUN_PY)], cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=output,
            preexec_fn=small_file_limit,
        )
    server = Server(url=f"http://127.0.0.1:{port}", port=port, log=log)
    try:
        deadline = time.monotonic() + START_TIMEOUT_SECONDS
        while status_of(server, timeout=1) != 200:
            if process.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"run.py did not start:\n{log.read_text()}")
            time.sleep(0.05)
        yield server
    finally:
        stop_process(process, timeout=10)


def status_of(server: Server, *, timeout: float) -> int | None:
    try:
        with httpx2.Client(timeout=timeout) as client:
            response = client.get(f"{server.url}/healthz", headers={"Connection": "close"})
    except httpx2.TransportError:
        return None
    if response.status_code == 503:
        assert int(response.headers["retry-after"]) > 0
    return response.status_code


def open_idle_sockets(server: Server, count: int) -> list[socket.socket]:
    opened = []
    for _ in range(count):
        sock = socket.socket()
        sock.settimeout(5)
        try:
            sock.connect(("127.0.0.1", server.port))
        except OSError:
            sock.close()
            continue
        opened.append(sock)
    return opened


def closed_by_server(sock: socket.socket, *, within: float) -> bool:
    """Whether the server ends the connection (EOF or reset) within `within` seconds; any answer
    it writes first (a 503) is read and skipped."""
    deadline = time.monotonic() + within
    while (left := deadline - time.monotonic()) > 0:
        sock.settimeout(left)
        try:
            if sock.recv(4096) == b"":
                return True
        except TimeoutError:
            return False
        except ConnectionError:
            return True
    return False


@pytest.fixture
def flooded(server):
    """The server with 1,100 idle sockets open against it (closed by the test afterwards)."""
    sockets = open_idle_sockets(server, IDLE_SOCKETS)
    yield server, sockets
    for sock in sockets:
        sock.close()


def test_a_request_is_answered_promptly_while_more_idle_sockets_are_open_than_the_file_limit(flooded):
    server, _ = flooded

    started = time.monotonic()
    status = status_of(server, timeout=PROMPT_SECONDS)

    assert status in (200, 503), f"no answer within {PROMPT_SECONDS} s"
    assert time.monotonic() - started < PROMPT_SECONDS


def test_idle_sockets_are_closed_after_the_head_timeout_and_requests_succeed_again(flooded):
    server, sockets = flooded

    still_open = [sock for sock in sockets if not closed_by_server(sock, within=0)]
    assert all(closed_by_server(sock, within=3 * HEAD_TIMEOUT_SECONDS) for sock in still_open[:50])
    deadline = time.monotonic() + 3 * HEAD_TIMEOUT_SECONDS
    while status_of(server, timeout=PROMPT_SECONDS) != 200:
        assert time.monotonic() < deadline, "the site did not recover after the idle sockets were closed"
        time.sleep(0.2)


def test_the_log_stays_short_and_json_through_a_flood_of_idle_sockets(flooded):
    server, sockets = flooded
    status_of(server, timeout=PROMPT_SECONDS)
    deadline = time.monotonic() + 3 * HEAD_TIMEOUT_SECONDS
    for sock in sockets:  # until the server has closed them all, or the time is up
        closed_by_server(sock, within=max(0.0, deadline - time.monotonic()))

    lines = server.log_lines()

    assert len(lines) <= MAX_LOG_LINES, "\n".join(lines[:MAX_LOG_LINES])
    assert all(isinstance(json.loads(line), dict) for line in lines)


def trickle(sock: socket.socket, data: bytes, *, every: float, within: float) -> bool:
    """Send `data` a byte every `every` seconds; whether the server closed the connection before
    `within` seconds were up (the request never completes in that time)."""
    deadline = time.monotonic() + within
    for byte in data:
        if time.monotonic() > deadline:
            return False
        try:
            sock.sendall(bytes([byte]))
        except (BrokenPipeError, ConnectionResetError):
            return True
        if closed_by_server(sock, within=every):
            return True
    return False


SLOW_HEAD = b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Padding: " + b"x" * 200 + b"\r\n\r\n"


def test_a_client_sending_its_head_a_byte_at_a_time_is_closed(server):
    with socket.create_connection(("127.0.0.1", server.port)) as sock:
        assert trickle(sock, SLOW_HEAD, every=0.5, within=4 * HEAD_TIMEOUT_SECONDS)


def test_a_keep_alive_request_sent_a_byte_at_a_time_after_a_quick_one_is_closed(server):
    with socket.create_connection(("127.0.0.1", server.port)) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        sock.settimeout(5)
        assert sock.recv(4096).startswith(b"HTTP/1.1 200")

        assert trickle(sock, SLOW_HEAD, every=0.5, within=4 * HEAD_TIMEOUT_SECONDS)


def test_a_body_sent_a_byte_at_a_time_is_closed_and_leaves_no_traceback(server):
    head = b"POST /api/auth/login HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
    body = b'{"username": "alice", "password": "' + b"x" * 400 + b'"}'
    with socket.create_connection(("127.0.0.1", server.port)) as sock:
        sock.sendall(head + b"Content-Length: %d\r\n\r\n" % len(body))

        assert trickle(sock, body, every=0.5, within=3 * BODY_TIMEOUT_SECONDS)
    time.sleep(0.5)
    tracebacks = [json.loads(line)["traceback"] for line in server.log_lines() if "traceback" in json.loads(line)]
    assert not tracebacks, server.log.read_text()[-3000:]


@pytest.mark.parametrize("file_limit", [256, 1024, 4096, 1 << 20])
def test_the_connection_cap_leaves_room_under_the_file_limit_for_a_burst_of_accepts_and_the_database(file_limit):
    limits = limits_for(file_limit)

    assert limits.max_connections + limits.backlog + FD_RESERVE + REFUSED_LINGER_MAX <= file_limit
    assert limits.max_connections <= MAX_CONNECTIONS
