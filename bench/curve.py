"""The protected page's cost curve: requests/s and p99 as connections grow, for 1, 2 and 4 workers.

    python -m bench.curve                        # SQLite (a few minutes)
    python -m bench.curve --database-url postgresql://user@127.0.0.1:5432/db    # SQLite, then Postgres
    python -m bench.curve --quick                # seconds: CI's smoke run
    python -m bench.curve --out-dir DIR          # also DIR/curve.json, curve.md and curve.png

Unlike bench/run.py's ratios these are absolute figures, true of this machine on this day. Each point
is one wrk run on the protected page of bench/apps.py, logged in; each server is uvicorn on authsite's
default stack (httptools, uvloop) with `--workers N` and WEB_CONCURRENCY=N (as `run.py --workers N`
sets it), warmed up for a second, then loaded at every connection count in turn.

wrk runs one thread (`-t1`) at every connection count, 256 included: one thread's event loop keeps
256 connections busy, and on a 2-core machine a second wrk thread would take its core from the
server being measured. The plot (matplotlib, Agg) draws requests/s and p99 against connections
(a log axis), a line per database and worker count; p99's own axis is logarithmic too, since it
grows about as fast as the connections once the server is saturated.
"""

import argparse
import json
import shutil
import sys
import tempfile
from pathlib import Path

from bench.tools import (
    PASSWORD, USERNAME, Target, authsite_env, database, log_in, machine_facts, run_py, server, wrk,
)

CONNECTIONS = (1, 4, 16, 64, 256)
WORKERS = (1, 2, 4)
WARM_UP_SECONDS, WARM_UP_CONNECTIONS = 1, 16  # every worker's first requests build caches and connections


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if shutil.which("wrk") is None:
        print("bench: wrk is not installed (apt-get install wrk)", file=sys.stderr)
        return 2
    plan = ({"seconds": 1, "connections": [1, 16], "workers": [1, 2]} if args.quick else
            {"seconds": args.duration, "connections": list(CONNECTIONS), "workers": list(WORKERS)})
    results = {"machine": machine_facts(), "plan": plan, "points": []}
    with tempfile.TemporaryDirectory(prefix="authsite-curve-") as tmp:
        for name, server_url in databases(args.database_url):
            results["points"] += curve(plan, name, server_url, Path(tmp) / name)
    table = markdown(results)
    print(table)
    if args.out_dir:
        out = Path(args.out_dir)
        out.mkdir(parents=True, exist_ok=True)
        (out / "curve.json").write_text(json.dumps(results, indent=2))
        (out / "curve.md").write_text(table)
        plot(results, out / "curve.png")
    return 0


def databases(url: str | None) -> list[tuple[str, str | None]]:
    """SQLite always (the file given, or a fresh one), and Postgres when a Postgres server is given."""
    if url and url.startswith("postgresql"):
        return [("sqlite", None), ("postgres", url)]
    return [("sqlite", url)]


def curve(plan: dict, name: str, server_url: str | None, tmp: Path) -> list[dict]:
    """Every point on one database: for each worker count a server of its own, loaded at every
    connection count in turn."""
    tmp.mkdir()
    points, cookie = [], None
    with database(server_url, str(tmp)) as url:
        env = authsite_env(tmp / "data", url)
        run_py("create-user", USERNAME, "--password-stdin", env=env, stdin=PASSWORD + "\n")
        for workers in plan["workers"]:
            with server("bench.apps:protected_app", dict(env, WEB_CONCURRENCY=str(workers)), workers=workers) as site:
                cookie = cookie or log_in(site.url)  # one session, kept across the servers
                page = Target(site.url + "/page", cookie)
                wrk(page, connections=WARM_UP_CONNECTIONS, seconds=WARM_UP_SECONDS)
                points += [{"database": name, "workers": workers, "connections": connections,
                            **wrk(page, connections=connections, seconds=plan["seconds"])}
                           for connections in plan["connections"]]
    return points


def lines(results: dict) -> dict[tuple[str, int], list[dict]]:
    """The points by database and worker count, each line in order of connections."""
    grouped = {}
    for point in results["points"]:
        grouped.setdefault((point["database"], point["workers"]), []).append(point)
    return {key: sorted(points, key=lambda p: p["connections"]) for key, points in grouped.items()}


def markdown(results: dict) -> str:
    """Two tables, requests/s and p99 (ms), a row per database and worker count, a column per
    connection count."""
    connections = results["plan"]["connections"]
    head = "| database | workers | " + " | ".join(f"{c} conn." for c in connections) + " |"
    rule = "| --- | --- |" + " ---: |" * len(connections)
    text = [f"wrk -t1, {results['plan']['seconds']} s per point; {results['machine']['cpus']} CPUs,"
            f" Python {results['machine']['python']}, {results['machine']['wrk'].split(' Copyright')[0]}"]
    for title, figure, form in (("Requests/s", "rps", "{:,.0f}"), ("p99 latency (ms)", "p99_ms", "{:.2f}")):
        text += ["", f"{title}:", "", head, rule]
        for (database, workers), points in lines(results).items():
            text.append(f"| {database} | {workers} | " + " | ".join(form.format(p[figure]) for p in points) + " |")
    return "\n".join(text) + "\n"


def plot(results: dict, path: Path) -> None:
    """requests/s and p99 against connections, side by side; a line per database and worker count."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot, ticker

    figure, (rps, p99) = pyplot.subplots(1, 2, figsize=(11, 4.5), layout="constrained")
    for (database, workers), points in lines(results).items():
        style = {"label": f"{database}, {workers} worker{'s' if workers > 1 else ''}", "marker": "o",
                 "linestyle": "-" if database == "sqlite" else "--", "color": f"C{WORKERS.index(workers)}"}
        connections = [p["connections"] for p in points]
        rps.plot(connections, [p["rps"] for p in points], **style)
        p99.plot(connections, [p["p99_ms"] for p in points], **style)
    for axes, label in ((rps, "requests/s"), (p99, "p99 latency (ms)")):
        axes.set_xscale("log", base=2)
        axes.set_xticks(results["plan"]["connections"], [str(c) for c in results["plan"]["connections"]])
        axes.set_xlabel("connections (wrk, one thread)")
        axes.set_ylabel(label)
        axes.grid(True, which="both", alpha=0.3)
    rps.set_ylim(bottom=0)
    p99.set_yscale("log")
    # Plain numbers at 1, 2 and 5 times each power of ten (the log axis' default labels are powers).
    p99.yaxis.set_major_locator(ticker.LogLocator(subs=(1, 2, 5)))
    p99.yaxis.set_major_formatter(ticker.FuncFormatter(lambda value, _: f"{value:g}"))
    p99.yaxis.set_minor_formatter(ticker.NullFormatter())
    rps.set_title("Protected page: throughput")
    p99.set_title("Protected page: p99 latency")
    p99.legend(fontsize="small", loc="upper left")  # where the low connection counts leave room
    figure.savefig(path, dpi=110)
    pyplot.close(figure)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bench.curve", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a seconds-long smoke run (CI): 1 s per point, fewer points")
    parser.add_argument("--duration", type=float, default=5, help="seconds per point (default 5)")
    parser.add_argument("--database-url", help="a Postgres server to measure on as well as SQLite (or a SQLite file)")
    parser.add_argument("--out-dir", help="also write curve.json, curve.md and curve.png here")
    return parser


if __name__ == "__main__":
    sys.exit(main())
