"""authsite's benchmark: its protected page against bare FastAPI, measured in one run.

    python -m bench.run                      # full run on SQLite (a few minutes)
    python -m bench.run --database-url postgresql://user@127.0.0.1:5432/db
    python -m bench.run --quick              # seconds: CI's smoke run

Every figure that matters is a ratio against a baseline measured in the same run, with the
phases interleaved, so the machine's speed cancels out. Load comes from wrk (Debian's `wrk`)
on loopback; servers are uvicorn with one worker, started here and stopped by PID.
"""

import argparse
import asyncio
import json
import math
import os
import platform
import re
import shutil
import signal
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
USERNAME, PASSWORD = "bench", "a bench password of some length"
SECRET = "bench-secret-key-bench-secret-key-0123456789"


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if shutil.which("wrk") is None:
        print("bench: wrk is not installed (apt-get install wrk)", file=sys.stderr)
        return 2
    plan = Plan.quick() if args.quick else Plan.full(args)
    results = {"machine": machine_facts(), "plan": plan.__dict__, "phases": {}}
    with tempfile.TemporaryDirectory(prefix="authsite-bench-") as tmp, database(args.database_url, tmp) as url:
        env = authsite_env(Path(tmp) / "data", url)
        run_py("create-user", USERNAME, "--password-stdin", env=env, stdin=PASSWORD + "\n")
        with server("bench.apps:bare_app", env) as bare, server("bench.apps:protected_app", env) as site:
            cookie = log_in(site.url)
            page = Target(site.url + "/page", cookie)
            results["phases"]["throughput"] = throughput(plan, Target(bare.url + "/page"), page)
            results["phases"]["login_storm"] = login_storm(plan, page, site.url)
            results["phases"]["memory"] = {"idle_rss_mb": site.idle_rss_mb, "storm_peak_rss_mb": site.peak_rss_mb}
            results["phases"]["writes"] = writes_per_session(plan, site.url, url)
            results["phases"]["table_size"] = table_size(plan, page, url)
            results["phases"]["login_throughput"] = login_throughput(plan, site.url)
        results["phases"]["startup"] = startup_time(Path(tmp) / "fresh")
    report(results)
    if args.out:
        Path(args.out).write_text(json.dumps(results, indent=2))
    return 0


class Plan:
    def __init__(self, *, duration: float, rounds: int, connections: int, extra_sessions: int, storm_logins: int,
                 writes_seconds: float):
        self.duration, self.rounds, self.connections = duration, rounds, connections
        self.extra_sessions, self.storm_logins, self.writes_seconds = extra_sessions, storm_logins, writes_seconds

    @classmethod
    def full(cls, args) -> "Plan":
        # 70 s of load on one session spans a whole touch interval (60 s): expect exactly one write.
        return cls(duration=args.duration, rounds=args.rounds, connections=16, extra_sessions=1_000_000,
                   storm_logins=8, writes_seconds=70)

    @classmethod
    def quick(cls) -> "Plan":
        return cls(duration=1, rounds=1, connections=4, extra_sessions=2_000, storm_logins=2, writes_seconds=2)


# What the phases measure


def throughput(plan: Plan, bare: "Target", page: "Target") -> dict:
    """Bare FastAPI and the protected page, interleaved round by round."""
    rounds = [{"bare": wrk(plan, bare), "authsite": wrk(plan, page)} for _ in range(plan.rounds)]
    bare_rps = statistics.median(r["bare"]["rps"] for r in rounds)
    site_rps = statistics.median(r["authsite"]["rps"] for r in rounds)
    return {"rounds": rounds, "bare_rps": bare_rps, "authsite_rps": site_rps, "ratio": site_rps / bare_rps}


def login_storm(plan: Plan, page: "Target", site_url: str) -> dict:
    """Page p99 while `storm_logins` logins run without pause, against p99 without (interleaved)."""
    calm, stormy = [], []
    for _ in range(plan.rounds):
        calm.append(wrk(plan, page)["p99_ms"])
        with storm(site_url, plan.storm_logins) as logins:
            stormy.append(wrk(plan, page)["p99_ms"])
        logins_done = logins.count
    p99_calm, p99_storm = statistics.median(calm), statistics.median(stormy)
    return {"p99_calm_ms": p99_calm, "p99_storm_ms": p99_storm, "ratio": p99_storm / p99_calm,
            "logins_during_last_storm": logins_done}


def table_size(plan: Plan, page: "Target", url: str) -> dict:
    """Throughput with 1 session row, then with `extra_sessions` more, then 1 again."""
    db = BenchDatabase(url)
    before = wrk(plan, page)["rps"]
    db.add_sessions(plan.extra_sessions)
    many = wrk(plan, page)["rps"]
    db.remove_added_sessions()
    after = wrk(plan, page)["rps"]
    few = (before + after) / 2
    return {"rows": plan.extra_sessions + 1, "rps_1_row": few, "rps_many_rows": many, "ratio": many / few}


def writes_per_session(plan: Plan, site_url: str, url: str) -> dict:
    """Keep one fresh session busy and count how often its row was written: every write moves
    last_seen_at, sampled every 2 s (writes are at least 60 s apart, so none is missed)."""
    cookie, db = log_in(site_url), BenchDatabase(url)
    seen = [db.last_seen()]
    began = time.monotonic()
    while time.monotonic() - began < plan.writes_seconds:
        wrk(plan, Target(site_url + "/page", cookie), seconds=2)
        seen.append(db.last_seen())
    seconds = time.monotonic() - began
    writes = sum(1 for before, after in zip(seen, seen[1:]) if before != after)
    return {"seconds_of_load": round(seconds, 1), "writes": writes, "allowed": math.ceil(seconds / 60)}


def login_throughput(plan: Plan, site_url: str) -> dict:
    """Logins per second through the API against argon2 verifies per second with the same pool."""
    from authsite.passwords import CONTEXT, PasswordHasher

    hashed = CONTEXT.hash(PASSWORD)
    hasher = PasswordHasher()
    workers = hasher.workers

    async def verifies_for(seconds: float) -> int:
        done, stop = 0, time.monotonic() + seconds

        async def one_worker():
            nonlocal done
            while time.monotonic() < stop:
                await hasher.verify(PASSWORD, hashed)
                done += 1

        await asyncio.gather(*(one_worker() for _ in range(workers * 2)))
        return done

    seconds = max(plan.duration, 2)
    hash_rate = asyncio.run(verifies_for(seconds)) / seconds
    hasher.close()
    with storm(site_url, workers * 2) as logins:
        time.sleep(seconds)
    login_rate = logins.count / seconds
    return {"hash_only_per_s": hash_rate, "logins_per_s": login_rate, "ratio": login_rate / hash_rate,
            "hash_workers": workers}


def startup_time(data_dir: Path) -> dict:
    """`python run.py` on a fresh SQLite file until /healthz answers 200."""
    env = authsite_env(data_dir, f"sqlite+aiosqlite:///{data_dir}/authsite.db")
    port = free_port()
    env["AUTHSITE_PORT"] = str(port)
    began = time.monotonic()
    process = subprocess.Popen([sys.executable, str(REPO / "run.py")], env=env, cwd=REPO,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_healthy(f"http://127.0.0.1:{port}", process)
        return {"seconds_to_first_200": time.monotonic() - began}
    finally:
        stop(process)


# Tools


class Target:
    def __init__(self, url: str, cookie: str | None = None):
        self.url, self.cookie = url, cookie


def wrk(plan: Plan, target: Target, seconds: float | None = None) -> dict:
    command = ["wrk", "-t1", f"-c{plan.connections}", f"-d{max(1, round(seconds or plan.duration))}s", "--latency"]
    if target.cookie:
        command += ["-H", f"Cookie: session={target.cookie}"]
    out = subprocess.run([*command, target.url], capture_output=True, text=True, check=True, timeout=120).stdout
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if non_2xx:
        raise RuntimeError(f"{target.url} answered {non_2xx.group(1)} requests with errors")
    return {"rps": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)),
            "p50_ms": _latency(out, "50%"), "p99_ms": _latency(out, "99%")}


def _latency(out: str, percentile: str) -> float:
    value, unit = re.search(rf"^\s+{re.escape(percentile)}\s+([\d.]+)(us|ms|s)\s*$", out, re.M).groups()
    return float(value) * {"us": 0.001, "ms": 1, "s": 1000}[unit]


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


@contextmanager
def server(factory: str, env: dict):
    port = free_port()
    command = [sys.executable, "-m", "uvicorn", factory, "--factory", "--host", "127.0.0.1", "--port", str(port),
               "--workers", "1", "--log-level", "warning", "--no-access-log"]
    process = subprocess.Popen(command, env=env, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_healthy(url, process, path="/page" if "bare" in factory else "/healthz")
        served = Server(process, url)
        yield served
        served._watching = False
    finally:
        stop(process)


@contextmanager
def storm(site_url: str, concurrency: int):
    """Logins through the JSON API without pause from `concurrency` threads."""
    class Counter:
        count = 0

    counter, lock, running = Counter(), threading.Lock(), threading.Event()
    running.set()

    def keep_logging_in():
        while running.is_set():
            log_in(site_url)
            with lock:
                counter.count += 1

    pool = ThreadPoolExecutor(concurrency)
    futures = [pool.submit(keep_logging_in) for _ in range(concurrency)]
    try:
        yield counter
    finally:
        running.clear()
        for future in futures:
            future.result()
        pool.shutdown()


def log_in(site_url: str) -> str:
    body = json.dumps({"username": USERNAME, "password": PASSWORD}).encode()
    request = urllib.request.Request(site_url + "/api/auth/login", data=body,
                                     headers={"content-type": "application/json"})
    with urllib.request.urlopen(request, timeout=60) as response:
        cookie = response.headers["set-cookie"]
    return re.match(r"session=([^;]+)", cookie).group(1)


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
                    "INSERT INTO session (token_hash, user_id, created_at, last_seen_at, expires_at, user_agent, remember)"
                    " SELECT ?, id, ?, ?, ?, ?, 0 FROM user LIMIT 1", (r[:2] + (r[1],) + r[2:] for r in rows))
            return
        self.run(
            "INSERT INTO session (token_hash, user_id, created_at, last_seen_at, expires_at, user_agent, remember)"
            " SELECT md5(random()::text) || md5(random()::text), (SELECT min(id) FROM \"user\"), '2026-01-01', '2026-01-01',"
            f" '2099-01-01', '{self.EXTRA}', false FROM generate_series(1, {int(count)})",
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


def report(results: dict) -> None:
    phases = results["phases"]
    t, s = phases["throughput"], phases["login_storm"]
    lines = [
        f"protected page / bare FastAPI: {t['ratio']:.3f}  ({t['authsite_rps']:.0f} vs {t['bare_rps']:.0f} req/s)",
        f"page p99 with login storm / without: {s['ratio']:.2f}  ({s['p99_storm_ms']:.2f} vs {s['p99_calm_ms']:.2f} ms)",
        f"login throughput / hashing-only limit: {phases['login_throughput']['ratio']:.2f}",
        f"writes to one busy session's row in {phases['writes']['seconds_of_load']} s: {phases['writes']['writes']}"
        f" (at most {phases['writes']['allowed']})",
        f"RSS idle / under storm: {phases['memory']['idle_rss_mb']:.1f} / {phases['memory']['storm_peak_rss_mb']:.1f} MB",
        f"start to first 200: {phases['startup']['seconds_to_first_200']:.2f} s",
    ]
    ts = phases["table_size"]
    lines.insert(2, f"{ts['rows']:,} session rows / 1 row: {ts['ratio']:.3f}")
    print("\n".join(lines))


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a seconds-long smoke run (CI)")
    parser.add_argument("--duration", type=float, default=8, help="seconds per wrk run (default 8)")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds (default 3)")
    parser.add_argument("--database-url", help="authsite's database (default: a fresh SQLite file)")
    parser.add_argument("--out", help="also write the results as JSON here")
    return parser


if __name__ == "__main__":
    sys.exit(main())
