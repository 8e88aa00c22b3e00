"""Worker processes beside a server: spawned, at a low CPU priority, and gone when the server is.

A server's CPU-heavy work that must not take the event loop's core or its GIL (password hashes,
judging a new password's strength) runs in processes made here. Spawned, not forked: the server
process has threads (SQLite's, the mailer's), which a fork copies badly.

A worker waits for work on a pipe whose write end it holds itself, so when its server is killed
outright (SIGKILL, the out-of-memory killer) no end-of-file ever reaches it and it would wait
forever, holding its memory. Each worker therefore watches for its parent to go and then exits.
"""

import asyncio
import gc
import multiprocessing
import os
import signal
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool

# How often a worker checks that its server is still there: the most it outlives it by.
PARENT_CHECK_SECONDS = 1.0
# The priority of a worker that is not `idle`: below every process of the server.
LOW_NICENESS = 19


def spawn_pool(workers: int, *, niceness: int = LOW_NICENESS, idle: bool = False,
               warm: Callable[[], object] | None = None) -> ProcessPoolExecutor:
    """A pool of `workers` processes, started on first use. `idle`: Linux's SCHED_IDLE, under which
    a worker runs only on a core nothing else wants (else `niceness`). `warm` runs in each worker
    as it starts, before its first task."""
    return ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn"),
                               initializer=_start_worker, initargs=(os.getpid(), niceness, idle, warm))


class WorkerPool:
    """A spawned pool started on first use, whose dead workers (killed, out of memory) are
    replaced: a task that finds the pool broken is tried once more on a new one."""

    def __init__(self, workers: int, **options):
        self.workers = workers
        self.options = options
        self._lock = threading.Lock()  # the pool may be asked for from more than one thread
        self._pool: ProcessPoolExecutor | None = None

    async def run(self, fn: Callable, *args):
        """`fn(*args)` in a worker; BrokenProcessPool if it failed on two pools in a row."""
        for attempt in (1, 2):
            pool = self._current()
            try:
                return await asyncio.get_running_loop().run_in_executor(pool, fn, *args)
            except BrokenProcessPool:
                self._discard(pool)
                if attempt == 2:
                    raise

    def processes(self) -> list[int]:
        """The PIDs of the workers started so far."""
        pool = self._pool
        return list(pool._processes or {}) if pool is not None else []

    def close(self, *, wait: bool = False) -> None:
        """Stop the workers; a later `run` starts new ones. `wait`: until they have exited and the
        pool's queues are released (at a server's end: else the interpreter may exit first, and
        multiprocessing's resource tracker prints a warning about leaked semaphores)."""
        self._discard(self._pool, wait=wait)

    def _current(self) -> ProcessPoolExecutor:
        with self._lock:
            if self._pool is None:
                self._pool = spawn_pool(self.workers, **self.options)
            return self._pool

    def _discard(self, pool: ProcessPoolExecutor | None, *, wait: bool = False) -> None:
        with self._lock:
            if pool is None or pool is not self._pool:
                return
            self._pool = None
        pool.shutdown(wait=wait, cancel_futures=True)
        if wait:
            del pool
            gc.collect()  # the pool's queues sit in reference cycles; their semaphores go with them


def _start_worker(server_pid: int, niceness: int, idle: bool, warm: Callable[[], object] | None) -> None:
    """In the worker: let the server's own processes have the CPU first, and end with the server."""
    # Ctrl-C in a terminal reaches the whole process group: the server shuts its workers down
    # itself, so they need not each print a KeyboardInterrupt traceback.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if not (idle and _run_only_when_idle()):
        try:
            os.nice(niceness)
        except OSError:
            pass
    threading.Thread(target=_exit_when_orphaned, args=(server_pid,), name="authsite-server-watch",
                     daemon=True).start()
    if warm is not None:
        warm()


def _run_only_when_idle() -> bool:
    if sys.platform != "linux":
        return False
    try:
        os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))
    except OSError:
        return False
    return True


def _exit_when_orphaned(server_pid: int) -> None:
    # A process whose parent dies is handed to init (or a subreaper): its parent id changes.
    while os.getppid() == server_pid:
        time.sleep(PARENT_CHECK_SECONDS)
    os._exit(0)
