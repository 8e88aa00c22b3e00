"""Files authsite keeps on disk (the SQLite database, the secret key, the outbox) are the site
user's alone: password hashes, emails, the key and reset links must not be readable by every
local user. Directories authsite creates are 0700, files 0600, whatever the umask."""

import logging
import os
import stat
from pathlib import Path

log = logging.getLogger("authsite")

PRIVATE_DIR_MODE = 0o700
PRIVATE_FILE_MODE = 0o600


def make_private_dir(path: Path) -> None:
    """Create `path` (and missing parents) 0700; a directory that already exists keeps its mode,
    which is the operator's choice (a mounted volume, say): the files in it are private anyway."""
    missing = [p for p in (path, *path.parents) if not p.exists()]
    for directory in reversed(missing):
        try:
            directory.mkdir(mode=PRIVATE_DIR_MODE)
        except FileExistsError:  # another worker made it first
            continue


def make_private_file(path: Path) -> None:
    """Create `path` empty with mode 0600 if it is missing, before anything else opens it
    (SQLite then gives its -wal and -shm files the same mode). An existing file that others may
    read is left as it is, with a warning saying how to fix it."""
    make_private_dir(path.parent)
    try:
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, PRIVATE_FILE_MODE))
    except FileExistsError:
        warn_if_shared(path)


def warn_if_shared(path: Path) -> None:
    try:
        mode = stat.S_IMODE(path.stat().st_mode)
    except OSError:
        return
    if mode & 0o077:
        log.warning("%s has mode %04o: other local users may read it; `chmod 600` it", path, mode)
