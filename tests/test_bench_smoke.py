"""The benchmark keeps working: a seconds-long run of every phase (the real numbers never gate CI)."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PHASES = {"throughput", "login_storm", "memory", "memory_h11", "writes", "table_size", "login_throughput", "startup"}
needs_wrk = pytest.mark.skipif(shutil.which("wrk") is None, reason="wrk is not installed (apt-get install wrk)")
# The benchmark's own environment (README "Benchmark"): its peers hold SQLAlchemy below 2.1, so they are
# not installed beside the tests. CI names it; without it, this Python is tried.
BENCH_PYTHON = os.environ.get("BENCH_PYTHON") or sys.executable


def _bench_extra_missing() -> bool:
    check = "import fastapi_users, granian, itsdangerous, matplotlib, authsite"
    return subprocess.run([BENCH_PYTHON, "-c", check], capture_output=True, timeout=60).returncode != 0


needs_bench_extra = pytest.mark.skipif(
    _bench_extra_missing(),
    reason=f'{BENCH_PYTHON} has no bench extra: python3 -m venv .venv-bench && .venv-bench/bin/pip install -e ".[bench]",'
           ' then BENCH_PYTHON=.venv-bench/bin/python')


def test_a_quick_in_process_run_measures_what_a_login_costs_besides_its_hash(tmp_path, database_url):
    out = tmp_path / "login_cost.json"
    env = {k: v for k, v in os.environ.items() if not k.startswith("AUTHSITE_")}

    result = subprocess.run(
        [sys.executable, "-m", "bench.login_cost", "--quick", "--database-url", database_url, "--out", str(out)],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=120,
    )

    assert result.returncode == 0, result.stderr[-2000:]
    measured = json.loads(out.read_text())
    assert measured["cpu_ms"] > 0
    assert 3 <= measured["statements"] <= 12  # the account, the reservation and its count, the session, the event
    assert "a login besides its hash" in result.stdout


@needs_wrk
@needs_bench_extra
def test_a_quick_benchmark_run_measures_every_phase(tmp_path, database_url):
    out = tmp_path / "results.json"
    env = {k: v for k, v in os.environ.items() if not k.startswith("AUTHSITE_")}

    result = subprocess.run(
        [BENCH_PYTHON, "-m", "bench.run", "--quick", "--database-url", database_url, "--out", str(out)],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=180,
    )

    assert result.returncode == 0, result.stderr[-2000:]
    phases = json.loads(out.read_text())["phases"]
    assert PHASES <= set(phases)
    assert phases["throughput"]["ratio"] > 0
    assert phases["throughput"]["speedup_over_h11"] > 0  # the same page on the old pure-Python stack
    assert phases["throughput"]["authsite_granian_rps"] > 0  # and on granian
    for peer in ("starlette_session", "fastapi_users"):  # what a user would pick instead, logged in
        assert phases["throughput"]["peers"][peer]["rps"] > 0
    assert phases["login_throughput"]["logins_per_s"] > 0
    assert phases["login_storm"]["cpu_ms_per_login"]["hashing"] > 0  # where a login's CPU goes, by process
    assert phases["writes"]["writes"] is not None  # counted on either database
    assert phases["table_size"]["rows"] > 1
    assert "protected page / bare FastAPI" in result.stdout
    assert "authsite vs fastapi-users" in result.stdout


def test_a_quick_in_process_run_measures_authsites_cost_per_request(tmp_path):
    out = tmp_path / "per_request.json"
    env = {k: v for k, v in os.environ.items() if not k.startswith("AUTHSITE_")}

    result = subprocess.run(
        [sys.executable, "-m", "bench.per_request", "--quick", "--out", str(out)],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=120,
    )

    assert result.returncode == 0, result.stderr[-2000:]
    measured = json.loads(out.read_text())
    assert measured["bare_us"] > 0
    assert measured["authsite_us"] > measured["bare_us"]  # the session read and the guard are not free
    assert set(measured["breakdown_us"]) == {"middleware", "session", "authsite"}
    assert sum(measured["breakdown_us"].values()) == pytest.approx(measured["extra_us"])
    assert "authsite's extra cost" in result.stdout


@needs_wrk
@needs_bench_extra
def test_a_quick_cost_curve_has_every_point_in_its_table_and_plot(tmp_path, database_url):
    env = {k: v for k, v in os.environ.items() if not k.startswith("AUTHSITE_")}

    result = subprocess.run(
        [BENCH_PYTHON, "-m", "bench.curve", "--quick", "--database-url", database_url, "--out-dir", str(tmp_path)],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=180,
    )

    assert result.returncode == 0, result.stderr[-2000:]
    measured = json.loads((tmp_path / "curve.json").read_text())
    databases = ["sqlite", "postgres"] if database_url.startswith("postgresql") else ["sqlite"]
    plan = measured["plan"]
    assert len(measured["points"]) == len(databases) * len(plan["workers"]) * len(plan["connections"])
    assert all(point["rps"] > 0 for point in measured["points"])
    table = (tmp_path / "curve.md").read_text()
    for database in databases:
        for workers in plan["workers"]:
            assert table.count(f"| {database} | {workers} |") == 2  # a row in the requests/s and p99 tables
    assert table in result.stdout
    assert (tmp_path / "curve.png").read_bytes().startswith(b"\x89PNG")
