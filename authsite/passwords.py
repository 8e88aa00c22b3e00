import asyncio
import os
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from functools import cache

from passlib.context import CryptContext
from passlib.exc import UnknownHashError

from authsite.worker_processes import WorkerPool

# OWASP's minimum for argon2id: 19 MiB, 2 passes, 1 lane. Raising these later
# is safe: logins rehash outdated hashes (`deprecated="auto"`).
ARGON2_MEMORY_KIB = 19456
ARGON2_TIME_COST = 2
ARGON2_PARALLELISM = 1
MAX_PASSWORD_CHARS = 1024
# Where a PasswordHasher hashes unless told: in worker processes (see PasswordHasher).
IN_PROCESSES = True

CONTEXT = CryptContext(
    schemes=["argon2"],
    deprecated="auto",
    argon2__type="ID",
    argon2__memory_cost=ARGON2_MEMORY_KIB,
    argon2__time_cost=ARGON2_TIME_COST,
    argon2__parallelism=ARGON2_PARALLELISM,
)


@cache
def _dummy_hash() -> str:
    # Verified against when the username is unknown, so that costs the same work
    # as a wrong password and response times do not reveal which accounts exist.
    return CONTEXT.hash("authsite dummy password")


def usable_cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))  # respects a container's CPU set
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def default_workers() -> int:
    """How many hashes run at once: one per usable CPU less one, at least one, so the event loop
    that serves every page keeps a core of its own. With a thread on every core, a login storm on
    2 cores tripled page p99 for 20 % more logins per second (issue 6); with a SCHED_IDLE process
    on every core it still raised it 1.63x against 1.34x for one (issue 18, bench/RESULTS.md).
    Several server processes on one machine (`run.py --workers N`, which sets WEB_CONCURRENCY for
    its workers, as uvicorn and gunicorn read it) share the cores between them."""
    return max(1, usable_cpus() // server_processes() - 1)


def server_processes() -> int:
    value = os.environ.get("WEB_CONCURRENCY", "")
    return int(value) if value.isdigit() and int(value) > 0 else 1


# How many hashes may wait per hashing worker, beyond the one it is computing. Each takes about
# 30 ms here, so a full queue is a wait of about a second; past it the answer is "busy, try
# again" (503) at once, instead of a queue that grows without end and makes every login wait
# behind an attacker's (issue 12: a real login waited 12.9 s behind 250 guesses).
QUEUE_PER_WORKER = 32


class HashingBusy(Exception):
    """Every place in the hashing queue is taken: answer 503 with Retry-After."""

    retry_after = 2


class PasswordHasher:
    """Hashing off the event loop, at most `workers` at once and `capacity` queued in all.

    `in_processes` (the default, what a server uses): in worker processes of its own at the lowest
    CPU priority (worker_processes.py), so a login storm takes neither the event loop's core nor
    its GIL. Otherwise in threads of this process: for the command line, which has no pages to
    protect and need not start a process for one hash, and for tests that watch the hashing."""

    def __init__(self, workers: int | None = None, *, capacity: int | None = None, in_processes: bool | None = None):
        self.in_processes = IN_PROCESSES if in_processes is None else in_processes
        self.workers = workers or default_workers()
        self.capacity = capacity or self.workers * QUEUE_PER_WORKER
        self._queued = 0
        # Each worker makes its dummy hash as it starts, not on the first unknown login.
        self._processes = WorkerPool(self.workers, idle=True, warm=_dummy_hash) if self.in_processes else None
        self._threads: ThreadPoolExecutor | None = None
        self._warming: asyncio.Future | None = None

    @property
    def is_full(self) -> bool:
        return self._queued >= self.capacity

    async def hash(self, password: str) -> str:
        return await self._run(_hash, password)

    async def verify(self, password: str, stored_hash: str) -> tuple[bool, str | None]:
        """(matches, new hash if the stored one is outdated)."""
        if not _is_hashable(password):
            # Still spend the work, so an odd password is not a timing oracle.
            await self._run(_verify_dummy, "x")
            return False, None
        try:
            return await self._run(_verify_and_update, password, stored_hash)
        except (UnknownHashError, ValueError):
            # No password matches (an account whose password was ended): the same work as a
            # wrong one, so the answer's time does not tell such an account exists.
            await self._run(_verify_dummy, "x")
            return False, None

    async def dummy_verify(self, password: str) -> None:
        await self._run(_verify_dummy, password if _is_hashable(password) else "x")

    async def warm_up(self) -> None:
        """Make the dummy hash now, not on the first unknown login. Worker processes make their own
        as they start, so they are only set going here: the site need not wait for them to answer."""
        if self._processes is None:
            await self._run(_dummy_hash)
            return
        self._warming = asyncio.ensure_future(self._run(_dummy_hash))
        self._warming.add_done_callback(_ignore_outcome)  # a failure shows again at the first login

    def worker_processes(self) -> list[int]:
        return self._processes.processes() if self._processes else []

    async def _run(self, fn, *args):
        if self.is_full:
            raise HashingBusy()
        self._queued += 1  # only the event loop's thread counts, so no lock is needed
        try:
            if self._processes is not None:
                try:
                    return await self._processes.run(fn, *args)
                except BrokenProcessPool:
                    raise HashingBusy() from None  # its workers died twice in a row: try again soon
            return await asyncio.get_running_loop().run_in_executor(self._thread_pool(), fn, *args)
        finally:
            self._queued -= 1

    def _thread_pool(self) -> ThreadPoolExecutor:
        if self._threads is None:
            self._threads = ThreadPoolExecutor(
                max_workers=self.workers, thread_name_prefix="authsite-hash", initializer=_yield_to_pages
            )
        return self._threads

    def close(self, *, wait: bool = False) -> None:
        """Stop the workers; hashing again later starts new ones. `wait`: until they are gone."""
        if self._processes is not None:
            self._processes.close(wait=wait)
        threads, self._threads = self._threads, None
        if threads is not None:
            threads.shutdown(wait=wait, cancel_futures=True)


def _ignore_outcome(future: asyncio.Future) -> None:
    if not future.cancelled():
        future.exception()


# A hashing thread runs at a lower CPU priority than the event loop: during a login storm the
# threads still use every idle cycle, but a page request waiting for the loop is scheduled first.
HASH_THREAD_NICENESS = 10


def _yield_to_pages() -> None:
    """Thread initializer: lower this thread's scheduling priority (Linux: niceness is per thread)."""
    if sys.platform == "linux":
        try:
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), HASH_THREAD_NICENESS)
        except OSError:
            pass


# What runs in a worker: module-level functions (a process pool sends a function by its name),
# each reading CONTEXT where it runs.


def _hash(password: str) -> str:
    return CONTEXT.hash(password)


def _verify_and_update(password: str, stored_hash: str) -> tuple[bool, str | None]:
    return CONTEXT.verify_and_update(password, stored_hash)


def _verify_dummy(password: str) -> None:
    CONTEXT.verify(password, _dummy_hash())


def _is_hashable(password: str) -> bool:
    if not 0 < len(password) <= MAX_PASSWORD_CHARS:
        return False
    try:
        password.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True

