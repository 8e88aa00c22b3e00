import subprocess
import sys
import textwrap

import pytest


@pytest.mark.parametrize("processes", ["0", "2"], ids=["one process", "two processes (pytest-xdist)"])
def test_a_skip_fails_the_run_under_ci(tmp_path, processes):
    (tmp_path / "test_skipping.py").write_text(
        textwrap.dedent(
            """
            import pytest

            def test_skipped():
                pytest.skip("missing a tool")
            """
        )
    )
    conftest = __import__("pathlib").Path(__file__).with_name("conftest.py")
    (tmp_path / "conftest.py").write_text(conftest.read_text())
    (tmp_path / "support.py").write_text(conftest.with_name("support.py").read_text())
    env = {"CI": "true", "PATH": "/usr/bin:/bin"}
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-n", processes, str(tmp_path)],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 1, result.stdout + result.stderr
    assert "every test must run" in result.stdout
