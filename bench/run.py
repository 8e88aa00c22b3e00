"""authsite's benchmark: its protected page against bare FastAPI and its peers, measured in one run.

    python -m bench.run                      # full run on SQLite (a few minutes)
    python -m bench.run --database-url postgresql://user@127.0.0.1:5432/db
    python -m bench.run --quick              # seconds: CI's smoke run

Every figure that matters is a ratio against a baseline measured in the same run, with the
phases interleaved, so the machine's speed cancels out. Load comes from wrk (Debian's `wrk`)
on loopback; servers are uvicorn with one worker, started here and stopped by PID.

The peers are what a user would pick instead (bench/peers.py, `pip install -e ".[bench]"`):
Starlette's signed-cookie SessionMiddleware and fastapi-users (cookie transport, access tokens in
its own SQLite file), serving the same page in the same interleaved rounds as authsite.
"""

import argparse
import asyncio
import json
import math
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

from bench.tools import (
    FASTAPI_USERS_COOKIE, PASSWORD, REPO, USERNAME, BenchDatabase, Target, authsite_env, cpu_seconds_by_part, database,
    free_port, log_in,
    log_in_with_fastapi_users, log_in_with_signed_cookie, machine_facts, peer_env, run_py, server, stop, storm,
    wait_healthy, wrk,
)


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
        with (server("bench.apps:bare_app", env) as bare, server("bench.apps:protected_app", env) as site,
              server("bench.apps:protected_app", env, stack="h11") as old_stack,
              server("bench.apps:protected_app", env, stack="granian") as on_granian, peer_pages(Path(tmp)) as peers,
              served_before(args.before, env) as before):
            cookie = log_in(site.url)
            page = Target(site.url + "/page", cookie)
            pages = {"bare": Target(bare.url + "/page"), "authsite": page,
                     "authsite_h11": Target(old_stack.url + "/page", cookie),
                     "authsite_granian": Target(on_granian.url + "/page", cookie), **peers}
            if before:
                pages["authsite_before"] = Target(before.url + "/page", cookie)
            results["phases"]["throughput"] = throughput(plan, pages)
            results["phases"]["memory_h11"] = {"idle_rss_mb": old_stack.idle_rss_mb}
            if before:
                results["phases"]["memory_before"] = {"idle_rss_mb": before.idle_rss_mb}
            results["phases"]["login_storm"] = login_storm(plan, page, site)
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


def load(plan: Plan, target: Target, seconds: float | None = None) -> dict:
    return wrk(target, connections=plan.connections, seconds=seconds or plan.duration)


# What the phases measure


PEERS = {"starlette_session": "Starlette SessionMiddleware (signed cookie)",
         "fastapi_users": "fastapi-users (cookie, DatabaseStrategy, aiosqlite)"}


@contextmanager
def peer_pages(tmp: Path):
    """The peers' pages (bench/peers.py), each with its user logged in once."""
    env = peer_env(tmp)
    with (server("bench.peers:signed_cookie_app", env) as signed,
          server("bench.peers:fastapi_users_app", env) as users):
        yield {"starlette_session": Target(signed.url + "/page", log_in_with_signed_cookie(signed.url)),
               "fastapi_users": Target(users.url + "/page", log_in_with_fastapi_users(users.url),
                                       cookie_name=FASTAPI_USERS_COOKIE)}


@contextmanager
def served_before(checkout: str | None, env: dict):
    """`--before`: the protected page as another checkout of authsite serves it (the code as it was
    before a change, on the stack it installed then: for issue 18, h11), on the same database."""
    if not checkout:
        yield None
        return
    with server("bench.apps:protected_app", env, stack="h11", repo=Path(checkout).resolve()) as before:
        yield before


def throughput(plan: Plan, pages: dict[str, "Target"]) -> dict:
    """Bare FastAPI and the protected page; the page on the pure-Python stack authsite installed
    before issue 18 (h11, asyncio's loop) and on granian; the peers' pages: interleaved round by round."""
    rounds = [{name: load(plan, target) for name, target in pages.items()} for _ in range(plan.rounds)]

    def median(name: str, figure: str = "rps") -> float:
        return statistics.median(r[name][figure] for r in rounds)

    result = {"rounds": rounds, "ratio": median("authsite") / median("bare"),
              "speedup_over_h11": median("authsite") / median("authsite_h11"),
              "granian_over_uvicorn": median("authsite_granian") / median("authsite")}
    if "authsite_before" in pages:
        result["speedup_over_before"] = median("authsite") / median("authsite_before")
    for name in pages:
        result[f"{name}_rps"], result[f"{name}_p99_ms"] = median(name), median(name, "p99_ms")
    result["peers"] = {peer: {"rps": median(peer), "p99_ms": median(peer, "p99_ms"),
                              "rps_ratio": median("authsite") / median(peer),
                              "p99_ratio": median("authsite", "p99_ms") / median(peer, "p99_ms")}
                       for peer in PEERS}
    return result


def login_storm(plan: Plan, page: "Target", site: "Server") -> dict:
    """Page p99 while `storm_logins` logins run without pause, against p99 without (interleaved);
    then one storm alone, for the CPU each login costs the server's process, its hashing process
    and the database's processes (the parts that share the page's cores)."""
    calm, stormy = [], []
    for _ in range(plan.rounds):
        calm.append(load(plan, page)["p99_ms"])
        with storm(site.url, plan.storm_logins, seconds=plan.duration + 1) as logins:
            stormy.append(load(plan, page)["p99_ms"])
        logins_done = logins.count
    p99_calm, p99_storm = statistics.median(calm), statistics.median(stormy)
    before = cpu_seconds_by_part(site.process.pid)
    with storm(site.url, plan.storm_logins, seconds=plan.duration) as alone:
        pass
    spent = cpu_seconds_by_part(site.process.pid)
    return {"p99_calm_ms": p99_calm, "p99_storm_ms": p99_storm, "ratio": p99_storm / p99_calm,
            "logins_during_last_storm": logins_done,
            "cpu_ms_per_login": {part: 1000 * (seconds - before[part]) / max(alone.count, 1)
                                 for part, seconds in spent.items()}}


def table_size(plan: Plan, page: "Target", url: str) -> dict:
    """Throughput with 1 session row, then with `extra_sessions` more, then 1 again."""
    db = BenchDatabase(url)
    before = load(plan, page)["rps"]
    db.add_sessions(plan.extra_sessions)
    many = load(plan, page)["rps"]
    db.remove_added_sessions()
    after = load(plan, page)["rps"]
    few = (before + after) / 2
    return {"rows": plan.extra_sessions + 1, "rps_1_row": few, "rps_many_rows": many, "ratio": many / few}


def writes_per_session(plan: Plan, site_url: str, url: str) -> dict:
    """Keep one fresh session busy and count how often its row was written: every write moves
    last_seen_at, sampled every 2 s (writes are at least 60 s apart, so none is missed)."""
    cookie, db = log_in(site_url), BenchDatabase(url)
    seen = [db.last_seen()]
    began = time.monotonic()
    while time.monotonic() - began < plan.writes_seconds:
        load(plan, Target(site_url + "/page", cookie), seconds=2)
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
    with storm(site_url, workers * 2, seconds) as logins:
        pass
    login_rate = logins.per_second
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


def report(results: dict) -> None:
    phases = results["phases"]
    t, s = phases["throughput"], phases["login_storm"]
    lines = [f"authsite vs {PEERS[name]}: {peer['rps_ratio']:.2f}x the req/s ({t['authsite_rps']:.0f} vs"
             f" {peer['rps']:.0f}), p99 {t['authsite_p99_ms']:.2f} vs {peer['p99_ms']:.2f} ms ({peer['p99_ratio']:.2f}x)"
             for name, peer in t["peers"].items()]
    lines += [
        f"protected page / bare FastAPI: {t['ratio']:.3f}  ({t['authsite_rps']:.0f} vs {t['bare_rps']:.0f} req/s)",
        f"protected page, httptools+uvloop / h11+asyncio: {t['speedup_over_h11']:.2f}  ({t['authsite_rps']:.0f} vs"
        f" {t['authsite_h11_rps']:.0f} req/s; p99 {t['authsite_p99_ms']:.2f} vs {t['authsite_h11_p99_ms']:.2f} ms)",
        f"protected page, granian / uvicorn: {t['granian_over_uvicorn']:.2f}  ({t['authsite_granian_rps']:.0f} vs"
        f" {t['authsite_rps']:.0f} req/s; p99 {t['authsite_granian_p99_ms']:.2f} vs {t['authsite_p99_ms']:.2f} ms)",
        f"page p99 with login storm / without: {s['ratio']:.2f}  ({s['p99_storm_ms']:.2f} vs {s['p99_calm_ms']:.2f} ms)",
        "CPU per login in a storm without page load: " + ", ".join(f"{part} {ms:.1f} ms" for part, ms in s["cpu_ms_per_login"].items()),
        f"login throughput / hashing-only limit: {phases['login_throughput']['ratio']:.2f}",
        f"writes to one busy session's row in {phases['writes']['seconds_of_load']} s: {phases['writes']['writes']}"
        f" (at most {phases['writes']['allowed']})",
        f"RSS idle / under storm: {phases['memory']['idle_rss_mb']:.1f} / {phases['memory']['storm_peak_rss_mb']:.1f} MB"
        f" (idle on h11+asyncio: {phases['memory_h11']['idle_rss_mb']:.1f} MB)",
        f"start to first 200: {phases['startup']['seconds_to_first_200']:.2f} s",
    ]
    ts = phases["table_size"]
    lines.insert(len(PEERS) + 3, f"{ts['rows']:,} session rows / 1 row: {ts['ratio']:.3f}")
    if "speedup_over_before" in t:
        lines.insert(len(PEERS), f"protected page now / the --before checkout on h11: {t['speedup_over_before']:.2f}"
                                 f"  ({t['authsite_rps']:.0f} vs {t['authsite_before_rps']:.0f} req/s; p99"
                                 f" {t['authsite_p99_ms']:.2f} vs {t['authsite_before_p99_ms']:.2f} ms; idle RSS"
                                 f" {phases['memory']['idle_rss_mb']:.1f} vs {phases['memory_before']['idle_rss_mb']:.1f} MB)")
    print("\n".join(lines))


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a seconds-long smoke run (CI)")
    parser.add_argument("--duration", type=float, default=8, help="seconds per wrk run (default 8)")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds (default 3)")
    parser.add_argument("--database-url", help="authsite's database (default: a fresh SQLite file)")
    parser.add_argument("--out", help="also write the results as JSON here")
    parser.add_argument("--before", metavar="CHECKOUT",
                        help="also serve the page from this checkout of authsite, on h11 (e.g. a git worktree of"
                             " the commit before issue 18), in the same rounds")
    return parser


if __name__ == "__main__":
    sys.exit(main())
