"""Password hashes run in worker processes of their own at the lowest CPU priority (SCHED_IDLE),
so a login storm takes neither the event loop's core nor its GIL (issue 18). The served site
(`run.py`) hashes there; the command line and the in-process tests hash in threads."""

import asyncio
import os
import signal
import sys
import time
from pathlib import Path

import httpx2
import pytest

from authsite import passwords
from authsite.passwords import CONTEXT, HashingBusy, PasswordHasher
from support import PASSWORD, running_server

linux_only = pytest.mark.skipif(sys.platform != "linux", reason="reads /proc and Linux's scheduling policies")


@pytest.fixture
def hasher():
    hasher = PasswordHasher(workers=1, in_processes=True)
    yield hasher
    hasher.close()


def children_of(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except (FileNotFoundError, ProcessLookupError):
                continue
            if int(fields[1]) == pid and fields[0] != "Z":
                found.append(int(entry.name))
    return found


def cpu_ticks(pid: int) -> int:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])  # utime + stime


def is_running(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


@linux_only
def test_the_served_site_hashes_in_a_process_that_runs_only_when_a_core_is_idle(tmp_path, database_url):
    with running_server(tmp_path, database_url, admin_username="alice", admin_password=PASSWORD) as (url, _, server):

        def log_in() -> None:
            answer = httpx2.post(f"{url}/api/auth/login", json={"username": "alice", "password": PASSWORD}, timeout=30)
            assert answer.status_code == 200, answer.text

        log_in()  # the hashing processes are started by now
        idle_children = [pid for pid in children_of(server.pid) if os.sched_getscheduler(pid) == os.SCHED_IDLE]
        assert idle_children, "no hashing process under SCHED_IDLE beside the server"
        before = sum(cpu_ticks(pid) for pid in idle_children)

        for _ in range(4):
            log_in()

        assert sum(cpu_ticks(pid) for pid in idle_children) > before, "the logins' hashes ran elsewhere"
        assert os.sched_getscheduler(server.pid) == os.SCHED_OTHER  # pages keep the normal priority


def test_a_hash_made_in_a_worker_process_verifies_and_a_wrong_password_does_not(hasher):
    stored = asyncio.run(hasher.hash(PASSWORD))

    assert CONTEXT.verify(PASSWORD, stored)
    assert asyncio.run(hasher.verify(PASSWORD, stored)) == (True, None)
    assert asyncio.run(hasher.verify("not the password", stored)) == (False, None)
    assert hasher.worker_processes() and os.getpid() not in hasher.worker_processes()


def test_a_stored_value_that_is_no_hash_fails_like_a_wrong_password_in_a_worker_process(hasher):
    assert asyncio.run(hasher.verify(PASSWORD, "!unusable")) == (False, None)


@linux_only
def test_a_killed_hashing_process_is_replaced_and_the_next_login_is_answered(hasher):
    stored = CONTEXT.hash(PASSWORD)
    asyncio.run(hasher.warm_up())
    (worker,) = hasher.worker_processes()

    os.kill(worker, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while is_running(worker) and time.monotonic() < deadline:
        time.sleep(0.05)

    assert asyncio.run(hasher.verify(PASSWORD, stored)) == (True, None)
    assert worker not in hasher.worker_processes()


@linux_only
def test_closing_the_hasher_stops_its_processes(hasher):
    asyncio.run(hasher.warm_up())
    workers = hasher.worker_processes()

    hasher.close()

    deadline = time.monotonic() + 10
    while any(is_running(pid) for pid in workers) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not any(is_running(pid) for pid in workers)


def test_a_full_queue_answers_busy_at_once_instead_of_waiting(hasher, monkeypatch):
    monkeypatch.setattr(hasher, "_queued", hasher.capacity)

    with pytest.raises(HashingBusy):
        asyncio.run(hasher.verify(PASSWORD, CONTEXT.hash(PASSWORD)))


@pytest.mark.parametrize(("cpus", "servers", "processes"),
                         [(1, "", 1), (2, "", 1), (4, "", 3), (4, "2", 1), (8, "2", 3), (4, "4", 1), (2, "8", 1)])
def test_hashing_leaves_a_core_to_the_pages_of_each_server_process_on_the_machine(monkeypatch, cpus, servers, processes):
    monkeypatch.setattr(passwords.os, "sched_getaffinity", lambda pid: set(range(cpus)), raising=False)
    monkeypatch.setenv("WEB_CONCURRENCY", servers)  # what `run.py --workers N` sets for its workers

    hasher = PasswordHasher(in_processes=True)
    try:
        assert hasher.workers == processes
    finally:
        hasher.close()
