"""The benchmark keeps working: a seconds-long run of every phase (the real numbers never gate CI)."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PHASES = {"throughput", "login_storm", "memory", "writes", "table_size", "login_throughput", "startup"}


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
    assert phases["login_throughput"]["logins_per_s"] > 0
    assert phases["writes"]["writes"] is not None  # counted on either database
    assert phases["table_size"]["rows"] > 1
    assert "protected page / bare FastAPI" in result.stdout
