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


@pytest.mark.skipif(shutil.which("wrk") is None, reason="wrk is not installed (apt-get install wrk)")
def test_a_quick_benchmark_run_measures_every_phase(tmp_path, database_url):
    out = tmp_path / "results.json"
    env = {k: v for k, v in os.environ.items() if not k.startswith("AUTHSITE_")}

    result = subprocess.run(
        [sys.executable, "-m", "bench.run", "--quick", "--database-url", database_url, "--out", str(out)],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=180,
    )

    assert result.returncode == 0, result.stderr[-2000:]
    phases = json.loads(out.read_text())["phases"]
    assert PHASES <= set(phases)
    assert phases["throughput"]["ratio"] > 0
    assert phases["throughput"]["speedup_over_h11"] > 0  # the same page on the old pure-Python stack
    assert phases["login_throughput"]["logins_per_s"] > 0
    assert phases["writes"]["writes"] is not None  # counted on either database
    assert phases["table_size"]["rows"] > 1
    assert "protected page / bare FastAPI" in result.stdout


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
