"""authsite's own cost per request, in-process: the ASGI apps called directly, no server, no socket.

    python -m bench.per_request              # 20,000 requests per app and round, 5 rounds
    python -m bench.per_request --quick      # CI's smoke run

What it reports is the difference between the protected page and bare FastAPI serving the same
page in the same process, interleaved round by round: microseconds authsite adds to each request
(the session read, the guard, the headers, its middleware), with the server's own work left out,
and what that is made of (STEPS below). wrk through a real server (bench/run.py) then shows what that difference is worth in requests/s.
"""

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

from bench.tools import PASSWORD, SECRET, USERNAME


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    requests, rounds = (2_000, 2) if args.quick else (args.requests, args.rounds)
    with tempfile.TemporaryDirectory(prefix="authsite-per-request-") as tmp:
        result = asyncio.run(measure(Path(tmp), requests=requests, rounds=rounds))
    print(f"bare FastAPI: {result['bare_us']:.1f} µs per request")
    print(f"protected page: {result['authsite_us']:.1f} µs per request")
    print(f"authsite's extra cost: {result['extra_us']:.1f} µs per request")
    parts = result["breakdown_us"]
    print(f"  of which: middleware and headers {parts['middleware']:.1f} µs, the session read {parts['session']:.1f} µs,"
          f" FastAPI solving Depends(logged_in) {parts['authsite']:.1f} µs")
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=2))
    return 0


# What the protected page's cost is made of, each case one step on from the one before it: the same
# small page served by authsite's app without a cookie (its middleware, headers, host check), with the
# session cookie but read from request.user (the session read), and through Depends(logged_in).
STEPS = ("bare", "middleware", "session", "authsite")


async def measure(tmp: Path, *, requests: int, rounds: int) -> dict:
    # The apps read their settings from the environment, as under uvicorn.
    os.environ.update(AUTHSITE_DATA_DIR=str(tmp / "data"), AUTHSITE_SECRET_KEY=SECRET,
                      AUTHSITE_LOG_LEVEL="warning", AUTHSITE_ALLOWED_HOSTS="bench")
    from authsite import accounts
    from bench.apps import bare_app, protected_app

    bare, protected = bare_app(), _with_unguarded_pages(protected_app())
    async with protected.router.lifespan_context(protected):
        site = protected.state.authsite
        async with site.database.sessionmaker() as db:
            await accounts.create_user(db=db, hasher=site.hasher, username=USERNAME, password=PASSWORD)
        cookie = await _log_in(protected)
        cases = {"bare": (bare, _scope("/page", cookie)), "middleware": (protected, _scope("/anyone", None)),
                 "session": (protected, _scope("/unguarded", cookie)), "authsite": (protected, _scope("/page", cookie))}
        for app, scope in cases.values():  # warm: first calls build caches and compile statements
            await _serve(app, dict(scope), 200)
        timings = {step: [] for step in STEPS}
        for _ in range(rounds):
            for step, (app, scope) in cases.items():
                timings[step].append(await _time(app, scope, requests))
    median = {step: statistics.median(timings[step]) for step in STEPS}
    return {"requests_per_round": requests, "rounds": rounds, "bare_us": median["bare"],
            "authsite_us": median["authsite"], "extra_us": median["authsite"] - median["bare"],
            "breakdown_us": {later: median[later] - median[earlier] for earlier, later in zip(STEPS, STEPS[1:])},
            "rounds_us": timings}


def _with_unguarded_pages(app):
    from fastapi import Request
    from fastapi.responses import HTMLResponse

    from bench.apps import PAGE

    @app.get("/anyone", response_class=HTMLResponse)
    async def anyone() -> str:
        return PAGE.format(name="visitor")

    @app.get("/unguarded", response_class=HTMLResponse)
    async def unguarded(request: Request) -> str:
        return PAGE.format(name=request.user.username)

    return app


async def _time(app, scope: dict, requests: int) -> float:
    began = time.perf_counter()
    for _ in range(requests):
        await _serve(app, dict(scope), 200)
    return (time.perf_counter() - began) / requests * 1e6


async def _serve(app, scope: dict, expected: int, body: bytes = b"") -> dict:
    sent = {}

    async def receive():
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message):
        if message["type"] == "http.response.start":
            sent["status"], sent["headers"] = message["status"], message["headers"]

    await app(scope, receive, send)
    if sent.get("status") != expected:
        raise RuntimeError(f"{scope['path']} answered {sent.get('status')}, not {expected}")
    return sent


async def _log_in(app) -> str:
    body = json.dumps({"username": USERNAME, "password": PASSWORD}).encode()
    scope = _scope("/api/auth/login", None, method="POST",
                   extra=[(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())])
    sent = await _serve(app, scope, 200, body)
    for name, value in sent["headers"]:
        if name == b"set-cookie" and value.startswith(b"session="):
            return value.split(b";", 1)[0].split(b"=", 1)[1].decode()
    raise RuntimeError("the login set no session cookie")


def _scope(path: str, cookie: str | None, *, method: str = "GET", extra: list | None = None) -> dict:
    headers = [(b"host", b"bench"), (b"user-agent", b"bench"), *(extra or [])]
    if cookie:
        headers.append((b"cookie", b"session=" + cookie.encode()))
    return {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": method, "scheme": "http",
            "path": path, "raw_path": path.encode(), "root_path": "", "query_string": b"", "headers": headers,
            "client": ("127.0.0.1", 40000), "server": ("127.0.0.1", 8000), "state": {}}


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bench.per_request", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a seconds-long smoke run (CI)")
    parser.add_argument("--requests", type=int, default=20_000, help="requests per app and round (default 20,000)")
    parser.add_argument("--rounds", type=int, default=5, help="interleaved rounds (default 5)")
    parser.add_argument("--out", help="also write the results as JSON here")
    return parser


if __name__ == "__main__":
    sys.exit(main())
