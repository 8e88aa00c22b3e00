"""What a login costs the server besides its password hash, in-process: CPU and trips to the database.

    python -m bench.login_cost                                   # SQLite, 300 logins
    python -m bench.login_cost --database-url postgresql://...   # a fresh database on that server
    python -m bench.login_cost --quick                           # CI's smoke run

The JSON login is called on the ASGI app directly, one after another, with the password hash
replaced by a no-op: what is left is the login's own work (its two units of database work, the
audit event, the answer), the part that shares the event loop with the pages during a login storm
(bench/run.py's storm phase measures the storm itself). Reported per login: process CPU, and the
statements its units of work sent (counted by SQLAlchemy's events). Round trips to Postgres, which
also count BEGIN, COMMIT and the pool's ping, are counted through a relay by
tests/test_postgres_round_trips.py.
"""

import argparse
import asyncio
import collections
import json
import os
import sys
import tempfile
import time
from pathlib import Path

from sqlalchemy import event

from bench.per_request import _log_in
from bench.tools import PASSWORD, SECRET, USERNAME, database


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logins = 20 if args.quick else args.logins
    with tempfile.TemporaryDirectory(prefix="authsite-login-cost-") as tmp, database(args.database_url, tmp) as url:
        result = asyncio.run(measure(Path(tmp), url, logins=logins))
    print(f"a login besides its hash: {result['cpu_ms']:.2f} ms of CPU, {result['statements']:.1f} statements"
          f" ({result['logins']} logins on {result['backend']})")
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=2))
    return 0


async def measure(tmp: Path, url: str, *, logins: int) -> dict:
    os.environ.update(AUTHSITE_DATA_DIR=str(tmp / "data"), AUTHSITE_SECRET_KEY=SECRET, AUTHSITE_DATABASE_URL=url,
                      AUTHSITE_LOG_LEVEL="warning", AUTHSITE_ALLOWED_HOSTS="bench",
                      AUTHSITE_LOGIN_MAX_FAILURES="100000", AUTHSITE_LOGIN_IP_MAX_FAILURES="100000")
    from authsite import accounts
    from bench.apps import protected_app

    app = protected_app()
    async with app.router.lifespan_context(app):
        site = app.state.authsite
        async with site.database.sessionmaker() as db:
            await accounts.create_user(db=db, hasher=site.hasher, username=USERNAME, password=PASSWORD)

        async def no_hash(password, stored_hash):
            return True, None

        site.hasher.verify = no_hash
        sent = collections.Counter()
        engine = site.database.run_engine
        event.listen(engine, "before_cursor_execute", lambda *_: sent.update(["statements"]))
        for _ in range(max(5, logins // 10)):  # statements prepared, pools filled
            await _log_in(app)
        sent.clear()
        started = time.process_time()
        for _ in range(logins):
            await _log_in(app)
        cpu = time.process_time() - started
    return {"backend": "postgres" if url.startswith("postgresql") else "sqlite", "logins": logins,
            "cpu_ms": 1000 * cpu / logins, "statements": sent["statements"] / logins}


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bench.login_cost", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a seconds-long smoke run (CI)")
    parser.add_argument("--logins", type=int, default=300, help="logins measured (default 300)")
    parser.add_argument("--database-url", help="a Postgres server to make a fresh database on (default: SQLite)")
    parser.add_argument("--out", help="also write the results as JSON here")
    return parser


if __name__ == "__main__":
    sys.exit(main())
