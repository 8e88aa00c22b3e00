"""Worker processes beside a server: spawned, at a low CPU priority, and gone when the server is.

A server's CPU-heavy work that must not take the event loop's core or its GIL (judging a new
password's strength) runs in a ProcessPoolExecutor made here. Spawned, not forked: the server
process has threads (SQLite's, the hashing pool's), which a fork copies badly.

A worker waits for work on a pipe whose write end it holds itself, so when its server is killed
outright (SIGKILL, the out-of-memory killer) no end-of-file ever reaches it and it would wait
forever, holding its memory. Each worker therefore watches for its parent to go and then exits.
"""

import multiprocessing
import os
import threading
import time
from concurrent.futures import ProcessPoolExecutor

# How often a worker checks that its server is still there: the most it outlives it by.
PARENT_CHECK_SECONDS = 1.0


def spawn_pool(workers: int, *, niceness: int) -> ProcessPoolExecutor:
    """A pool of `workers` processes at `niceness`, started on first use."""
    return ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn"),
                               initializer=_start_worker, initargs=(os.getpid(), niceness))


def _start_worker(server_pid: int, niceness: int) -> None:
    """In the worker: let the server's own processes have the CPU first, and end with the server."""
    try:
        os.nice(niceness)
    except OSError:
        pass
    threading.Thread(target=_exit_when_orphaned, args=(server_pid,), name="authsite-server-watch",
                     daemon=True).start()


def _exit_when_orphaned(server_pid: int) -> None:
    # A process whose parent dies is handed to init (or a subreaper): its parent id changes.
    while os.getppid() == server_pid:
        time.sleep(PARENT_CHECK_SECONDS)
    os._exit(0)
