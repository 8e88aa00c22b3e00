"""The benchmark's machinery: wrk, the servers under test, login clients, and direct access to
authsite's database behind its back. The phases that use it are in bench/run.py."""

import asyncio
import json
import os
import platform
import re
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
import urllib.parse
import urllib.request
from contextlib import contextmanager
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
USERNAME, PASSWORD = "bench", "a bench password of some length"
SECRET = "bench-secret-key-bench-secret-key-0123456789"
# fastapi-users knows its users by address (bench/peers.py's page shows the local part) and reads its
# cookie transport's default cookie name.
FASTAPI_USERS_EMAIL, FASTAPI_USERS_COOKIE = f"{USERNAME}@example.com", "fastapiusersauth"


class Target:
    def __init__(self, url: str, cookie: str | None = None, cookie_name: str = "session"):
        self.url, self.cookie, self.cookie_name = url, cookie, cookie_name


def wrk(target: Target, *, connections: int, seconds: float) -> dict:
    """One wrk run (one thread, `connections` open): requests/s, p50 and p99 in ms."""
    command = ["wrk", "-t1", f"-c{connections}", f"-d{max(1, round(seconds))}s", "--latency"]
    if target.cookie:
        command += ["-H", f"Cookie: {target.cookie_name}={target.cookie}"]
    out = subprocess.run([*command, target.url], capture_output=True, text=True, check=True, timeout=120).stdout
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if non_2xx:
        raise RuntimeError(f"{target.url} answered {non_2xx.group(1)} requests with errors")
    return {"rps": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)),
            "p50_ms": _latency(out, "50%"), "p99_ms": _latency(out, "99%")}


def _latency(out: str, percentile: str) -> float:
    value, unit = re.search(rf"^\s+{re.escape(percentile)}\s+([\d.]+)(us|ms|s)\s*$", out, re.M).groups()
    return float(value) * {"us": 0.001, "ms": 1, "s": 1000}[unit]


def cpu_seconds_by_part(server_pid: int) -> dict[str, float]:
    """CPU time used so far by the server's process, by its child processes (the hashing process)
    and by this machine's Postgres processes (none on SQLite), from /proc."""
    children = [int(pid) for pid in Path(f"/proc/{server_pid}/task/{server_pid}/children").read_text().split()]
    postgres = [int(entry.name) for entry in Path("/proc").iterdir()
                if entry.name.isdigit() and _command_of(entry).startswith("postgres")]
    return {"server": _cpu_seconds([server_pid]), "hashing": _cpu_seconds(children), "postgres": _cpu_seconds(postgres)}


def _command_of(proc: Path) -> str:
    try:
        return (proc / "comm").read_text().strip()
    except OSError:
        return ""


def _cpu_seconds(pids: list[int]) -> float:
    ticks = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue  # gone meanwhile
        ticks += int(fields[11]) + int(fields[12])  # utime, stime
    return ticks / os.sysconf("SC_CLK_TCK")


class Server:
    def __init__(self, process: subprocess.Popen, url: str):
        self.process, self.url, self.peak_rss_mb = process, url, 0.0
        self.idle_rss_mb = self.rss_mb()  # right after start, before any load
        self._watching = True
        threading.Thread(target=self._watch_rss, daemon=True).start()

    def rss_mb(self) -> float:
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        return 0.0

    def _watch_rss(self) -> None:
        while self._watching and self.process.poll() is None:
            self.peak_rss_mb = max(self.peak_rss_mb, self.rss_mb())
            time.sleep(0.2)


UVICORN = [sys.executable, "-m", "uvicorn", "--factory", "--log-level", "warning", "--no-access-log"]
# The servers the page is served on: uvicorn as authsite installs it (httptools and uvloop, which
# uvicorn picks by itself); the pure-Python stack it installed before issue 18 (h11 and asyncio's own
# loop), for comparison; and granian (a Rust HTTP server; ASGI with lifespan, uvloop), a candidate.
STACKS = {
    "default": UVICORN,
    "h11": [*UVICORN, "--http", "h11", "--loop", "asyncio"],
    "granian": [sys.executable, "-m", "granian", "--interface", "asgi", "--factory", "--loop", "uvloop",
                "--log-level", "warning", "--no-access-log"],
}


@contextmanager
def server(factory: str, env: dict, *, stack: str = "default", workers: int = 1, repo: Path = REPO):
    """A server of `workers` processes on a free port, until the block ends (stopped by the PID
    of its parent, which stops its workers). `repo`: the checkout whose code it serves."""
    port = free_port()
    command = [*STACKS[stack], "--host", "127.0.0.1", "--port", str(port), "--workers", str(workers), factory]
    env = dict(env, PYTHONPATH=str(repo))
    process = subprocess.Popen(command, env=env, cwd=repo, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_healthy(url, process, path="/page" if "bare" in factory else "/healthz")
        served = Server(process, url)
        yield served
        served._watching = False
    finally:
        stop(process)


LOGIN_SCRIPT = Path(__file__).with_name("login.lua")
STORM_RAMP_SECONDS = 0.5  # logins under way before anything is measured


class Logins:
    """What a storm of logins achieved: how many, and how many per second."""

    count = 0
    per_second = 0.0


@contextmanager
def storm(site_url: str, concurrency: int, seconds: float):
    """Logins through the JSON API without pause, `concurrency` at once, for `seconds`: wrk again
    (bench/login.lua), so the client costs the shared CPUs as little as the page load does.
    The block runs once the logins are under way; leaving it waits for the storm to end."""
    env = dict(os.environ, BENCH_LOGIN_BODY=json.dumps({"username": USERNAME, "password": PASSWORD}))
    command = ["wrk", "-t1", f"-c{concurrency}", f"-d{max(1, round(seconds))}s", "-s", str(LOGIN_SCRIPT),
               site_url + "/api/auth/login"]
    process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    logins = Logins()
    try:
        time.sleep(STORM_RAMP_SECONDS)
        yield logins
        out, err = process.communicate(timeout=seconds + 60)
    finally:
        if process.poll() is None:
            stop(process)
    if process.returncode != 0 or (failed := re.search(r"Non-2xx or 3xx responses: (\d+)", out)):
        raise RuntimeError(f"the login storm failed: {err.strip() or failed.group(1) + ' logins refused'}")
    logins.count = int(re.search(r"(\d+) requests in", out).group(1))
    logins.per_second = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))

def log_in(site_url: str) -> str:
    return _post_json(site_url + "/api/auth/login", {"username": USERNAME, "password": PASSWORD}, "session")


def log_in_with_signed_cookie(peer_url: str) -> str:
    """The session cookie of bench/peers.py's Starlette SessionMiddleware app."""
    return _post_json(peer_url + "/login", {"username": USERNAME, "password": PASSWORD}, "session")


def log_in_with_fastapi_users(peer_url: str) -> str:
    """Register the bench's user on bench/peers.py's fastapi-users app, then log in: its cookie."""
    _post_json(peer_url + "/auth/register", {"email": FASTAPI_USERS_EMAIL, "password": PASSWORD})
    form = urllib.parse.urlencode({"username": FASTAPI_USERS_EMAIL, "password": PASSWORD}).encode()
    return _cookie(urllib.request.Request(peer_url + "/auth/login", data=form), FASTAPI_USERS_COOKIE)


def _post_json(url: str, body: dict, cookie_name: str | None = None) -> str | None:
    request = urllib.request.Request(url, data=json.dumps(body).encode(), headers={"content-type": "application/json"})
    if cookie_name is None:
        urllib.request.urlopen(request, timeout=60).close()
        return None
    return _cookie(request, cookie_name)


def _cookie(request: urllib.request.Request, name: str) -> str:
    with urllib.request.urlopen(request, timeout=60) as response:
        cookie = response.headers["set-cookie"]
    return re.match(rf"{name}=([^;]+)", cookie).group(1)


@contextmanager
def database(server_url: str | None, tmp: str):
    """A fresh SQLite file (or the SQLite file given), or a fresh database of our own on the
    given Postgres server (dropped afterwards), so every run starts from the same empty state."""
    if not server_url:
        yield f"sqlite+aiosqlite:///{tmp}/data/authsite.db"
        return
    if server_url.startswith("sqlite"):
        yield server_url
        return
    head, _, _ = server_url.rpartition("/")
    name = f"authsite_bench_{os.urandom(4).hex()}"
    admin = BenchDatabase(server_url)
    admin.run(f'CREATE DATABASE "{name}"')
    try:
        yield f"postgresql+asyncpg://{head.split('://', 1)[1]}/{name}"
    finally:
        admin.run(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


class BenchDatabase:
    """What the benchmark reads and writes in authsite's database behind its back, on either backend."""

    EXTRA = "bench-extra"  # the user agent that marks the rows the table-size phase adds

    def __init__(self, url: str):
        self.url = url
        self.is_sqlite = url.startswith("sqlite")

    def add_sessions(self, count: int) -> None:
        if self.is_sqlite:
            with sqlite3.connect(self._sqlite_path()) as conn:
                rows = ((os.urandom(32).hex(), "2026-01-01 00:00:00.000000", "2099-01-01 00:00:00.000000", self.EXTRA)
                        for _ in range(count))
                conn.executemany(
                    "INSERT INTO session (token_hash, user_id, created_at, last_seen_at, authenticated_at, expires_at,"
                    " user_agent, remember) SELECT ?, id, ?, ?, ?, ?, ?, 0 FROM user LIMIT 1",
                    (r[:2] + (r[1], r[1]) + r[2:] for r in rows))
            return
        self.run(
            "INSERT INTO session (token_hash, user_id, created_at, last_seen_at, authenticated_at, expires_at, user_agent,"
            " remember) SELECT md5(random()::text) || md5(random()::text), (SELECT min(id) FROM \"user\"), '2026-01-01',"
            f" '2026-01-01', '2026-01-01', '2099-01-01', '{self.EXTRA}', false FROM generate_series(1, {int(count)})",
            "ANALYZE session",
        )

    def remove_added_sessions(self) -> None:
        if self.is_sqlite:
            with sqlite3.connect(self._sqlite_path()) as conn:
                conn.execute("DELETE FROM session WHERE user_agent = ?", (self.EXTRA,))
            return
        self.run(f"DELETE FROM session WHERE user_agent = '{self.EXTRA}'", "VACUUM ANALYZE session")

    def last_seen(self) -> str | None:
        """last_seen_at of the newest session."""
        query = "SELECT last_seen_at FROM session ORDER BY id DESC LIMIT 1"
        if self.is_sqlite:
            with sqlite3.connect(self._sqlite_path()) as conn:
                row = conn.execute(query).fetchone()
            return row[0] if row else None
        return self.run(query)

    def _sqlite_path(self) -> str:
        return self.url.split("///", 1)[1]

    def run(self, *statements: str):
        """Postgres statements on a connection of their own; the last one's result as text."""
        import asyncpg

        dsn = "postgresql://" + self.url.split("://", 1)[1]

        async def run():
            conn = await asyncpg.connect(dsn)
            try:
                result = None
                for statement in statements:
                    result = await conn.fetchval(statement) if statement.startswith("SELECT") else await conn.execute(statement)
                return None if result is None else str(result)
            finally:
                await conn.close()

        return asyncio.run(run())


def authsite_env(data_dir: Path, url: str) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AUTHSITE_")}
    env.update(AUTHSITE_DATA_DIR=str(data_dir), AUTHSITE_DATABASE_URL=url, AUTHSITE_SECRET_KEY=SECRET,
               AUTHSITE_LOG_LEVEL="warning", AUTHSITE_LOGIN_MAX_FAILURES="100000",
               AUTHSITE_LOGIN_IP_MAX_FAILURES="100000", PYTHONPATH=str(REPO))
    return env


def peer_env(tmp: Path) -> dict:
    """The peers' environment: fastapi-users on a SQLite file of its own, whatever authsite runs on."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AUTHSITE_")}
    env.update(BENCH_PEER_DATABASE_URL=f"sqlite+aiosqlite:///{tmp}/peers.db", PYTHONPATH=str(REPO))
    return env


def run_py(*args: str, env: dict, stdin: str) -> None:
    subprocess.run([sys.executable, str(REPO / "run.py"), *args], env=env, input=stdin, text=True,
                   check=True, capture_output=True, timeout=120)


def wait_healthy(url: str, process: subprocess.Popen, path: str = "/healthz") -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server for {url} exited with {process.returncode}")
        try:
            with urllib.request.urlopen(url + path, timeout=1) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.02)
    raise RuntimeError(f"{url} did not answer in 30 s")


def stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def machine_facts() -> dict:
    wrk_version = subprocess.run(["wrk", "--version"], capture_output=True, text=True).stdout.splitlines()
    return {"python": platform.python_version(), "cpus": os.cpu_count(), "machine": platform.machine(),
            "kernel": platform.release(), "wrk": wrk_version[0] if wrk_version else "?"}
