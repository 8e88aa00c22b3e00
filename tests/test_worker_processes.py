"""The strength judge's worker process ends with its server, however the server ends: a server
killed outright (SIGKILL, the out-of-memory killer) must not leave a process behind holding memory."""

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
# A stand-in server: judges one password (which starts the worker), says the worker's PID, waits.
SERVER = textwrap.dedent(
    """
    import asyncio, time
    from authsite import strength

    async def judge_once():
        await strength.password_problem("a long and unusual passphrase 93", user_inputs=[])

    if __name__ == "__main__":
        asyncio.run(judge_once())
        print(*strength.worker_processes(), flush=True)
        time.sleep(120)
    """
)


def is_running(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state != "Z"  # a zombie has ended; only its exit status is left


def test_a_killed_servers_strength_worker_exits_within_seconds(tmp_path):
    script = tmp_path / "server.py"
    script.write_text(SERVER)
    env = dict(os.environ, PYTHONPATH=str(REPO))
    server = subprocess.Popen([sys.executable, str(script)], cwd=tmp_path, env=env, stdout=subprocess.PIPE, text=True)
    workers = []
    try:
        workers = [int(pid) for pid in server.stdout.readline().split()]
        assert workers and all(is_running(pid) for pid in workers)

        server.kill()
        server.wait()

        deadline = time.monotonic() + 10
        while any(is_running(pid) for pid in workers) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not any(is_running(pid) for pid in workers), "the worker outlived its server"
    finally:
        server.kill()
        for pid in workers:
            if is_running(pid):
                os.kill(pid, signal.SIGKILL)
