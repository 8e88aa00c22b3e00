import asyncio
import os
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from functools import cache

from passlib.context import CryptContext
from passlib.exc import UnknownHashError

# OWASP's minimum for argon2id: 19 MiB, 2 passes, 1 lane. Raising these later
# is safe: logins rehash outdated hashes (`deprecated="auto"`).
ARGON2_MEMORY_KIB = 19456
ARGON2_TIME_COST = 2
ARGON2_PARALLELISM = 1
MAX_PASSWORD_CHARS = 1024

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


def default_workers() -> int:
    """One hashing thread per CPU this process may use, less one, and at least one.

    The event loop that serves every page is one thread, so it keeps a core of its own: with a
    thread on every core, a login storm on 2 cores tripled page p99 for 20 % more logins per
    second, and a lower CPU priority alone did not stop it (issue 6, bench/RESULTS.md)."""
    try:
        cpus = len(os.sched_getaffinity(0))  # respects a container's CPU set
    except AttributeError:  # not on Linux
        cpus = os.cpu_count() or 1
    return max(1, cpus - 1)


# How many hashes may wait per hashing thread, beyond the one it is computing. Each takes about
# 30 ms here, so a full queue is a wait of about a second; past it the answer is "busy, try
# again" (503) at once, instead of a queue that grows without end and makes every login wait
# behind an attacker's (issue 12: a real login waited 12.9 s behind 250 guesses).
QUEUE_PER_WORKER = 32


class HashingBusy(Exception):
    """Every place in the hashing queue is taken: answer 503 with Retry-After."""

    retry_after = 2


class PasswordHasher:
    """Hashing off the event loop, at most `workers` at once and `capacity` queued in all."""

    def __init__(self, workers: int | None = None, *, capacity: int | None = None):
        self.workers = workers or default_workers()
        self.capacity = capacity or self.workers * QUEUE_PER_WORKER
        self._queued = 0
        self._pool = ThreadPoolExecutor(
            max_workers=self.workers, thread_name_prefix="authsite-hash", initializer=_yield_to_pages
        )

    @property
    def is_full(self) -> bool:
        return self._queued >= self.capacity

    async def hash(self, password: str) -> str:
        return await self._run(CONTEXT.hash, password)

    async def verify(self, password: str, stored_hash: str) -> tuple[bool, str | None]:
        """(matches, new hash if the stored one is outdated)."""
        if not _is_hashable(password):
            # Still spend the work, so an odd password is not a timing oracle.
            await self._run(_verify_dummy, "x")
            return False, None
        try:
            return await self._run(CONTEXT.verify_and_update, password, stored_hash)
        except (UnknownHashError, ValueError):
            # No password matches (an account whose password was ended): the same work as a
            # wrong one, so the answer's time does not tell such an account exists.
            await self._run(_verify_dummy, "x")
            return False, None

    async def dummy_verify(self, password: str) -> None:
        await self._run(_verify_dummy, password if _is_hashable(password) else "x")

    async def warm_up(self) -> None:
        """Make the dummy hash in the pool now, not on the first unknown login."""
        await self._run(_dummy_hash)

    async def _run(self, fn, *args):
        if self.is_full:
            raise HashingBusy()
        self._queued += 1  # only the event loop's thread counts, so no lock is needed
        try:
            return await asyncio.get_running_loop().run_in_executor(self._pool, fn, *args)
        finally:
            self._queued -= 1

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)


# A hashing thread runs at a lower CPU priority than the event loop: during a login storm the
# threads still use every idle cycle, but a page request waiting for the loop is scheduled first,
# so logins cannot push up page latency (issue 6: page p99 under a storm at most 1.5x calm).
HASH_THREAD_NICENESS = 10


def _yield_to_pages() -> None:
    """Thread initializer: lower this thread's scheduling priority (Linux: niceness is per thread)."""
    if sys.platform == "linux":
        try:
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), HASH_THREAD_NICENESS)
        except OSError:
            pass


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

