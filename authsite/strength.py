"""Judging how guessable a new password is, in a process of its own.

zxcvbn is pure Python and its cost grows fast with length and repetition (tens of milliseconds,
more on a loaded machine, for `"1" * 72`). On the event loop, or in a thread holding the GIL, three
connections posting such passwords held every page of the site (issue 12: a logged-in page went
from 25 to 690 ms). So the judging runs in one worker process per server process, started on first
use, at the lowest CPU priority, behind a bounded queue: past it the answer is "busy" (503).
The rule itself is `rules.password_problem`; this module only decides where it runs.
"""

import asyncio
import atexit
import threading
from concurrent.futures.process import BrokenProcessPool
from functools import partial

from authsite import rules
from authsite.passwords import HashingBusy
from authsite.worker_processes import WorkerPool

# Passwords waiting to be judged in this process, the one being judged included.
QUEUE_LIMIT = 32
# A judgement that takes longer than this (a worker starved of CPU) answers "busy" instead.
TIMEOUT_SECONDS = 15
WORKER_NICENESS = 19

_lock = threading.Lock()
_waiting = 0
_WORKER = WorkerPool(1, niceness=WORKER_NICENESS)


async def password_problem(password: str, *, user_inputs: list[str]) -> str | None:
    """Why a new password is refused, or None (see rules.password_problem), judged off the loop."""
    if problem := rules.password_shape_problem(password):
        return problem  # too short, too long or unstorable: no need for the worker
    global _waiting
    with _lock:
        if _waiting >= QUEUE_LIMIT:
            raise HashingBusy()
        _waiting += 1
    try:
        return await _judge(password, user_inputs)
    finally:
        with _lock:
            _waiting -= 1


async def _judge(password: str, user_inputs: list[str]) -> str | None:
    judge = partial(rules.password_problem, password, user_inputs=user_inputs)
    try:
        return await asyncio.wait_for(_WORKER.run(judge), TIMEOUT_SECONDS)
    except (BrokenProcessPool, TimeoutError):
        raise HashingBusy() from None  # it died twice in a row, or is starved of CPU


def worker_processes() -> list[int]:
    return _WORKER.processes()


def stop_worker() -> None:
    """Stop the worker and wait for it (a server's end); judging again later starts a new one."""
    _WORKER.close(wait=True)


atexit.register(stop_worker)  # a command's end, or a server that never stopped its app
