"""What a first start leaves on disk is the site user's alone: the data directory 0700, the SQLite
file, its WAL and shared-memory files and the secret key 0600 (password hashes, emails and the key
that signs CSRF tokens must not be readable by every local user)."""

import logging
import os
import stat
from contextlib import contextmanager

import pytest
from fastapi.testclient import TestClient

from authsite import create_app

pytestmark = pytest.mark.sqlite_only


@contextmanager
def umask(mask: int):
    """The usual umask of a shell (022), whatever the test runner's is."""
    previous = os.umask(mask)
    try:
        yield
    finally:
        os.umask(previous)


def mode(path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_a_first_start_makes_the_data_directory_and_its_files_private(settings):
    data = settings.data_dir
    assert not data.exists()

    with umask(0o022), TestClient(create_app(settings)) as client:
        # A write, so SQLite has its -wal and -shm files open beside the database.
        client.get("/auth/login")
        modes = {path.name: mode(path) for path in data.iterdir() if path.is_file()}
        directory = mode(data)

    assert directory == 0o700
    assert {"authsite.db", "authsite.db-wal", "authsite.db-shm", "secret_key"} <= modes.keys()
    assert modes == {name: 0o600 for name in modes}, {name: oct(m) for name, m in modes.items()}


def test_an_existing_data_directory_keeps_its_mode_and_gets_private_files(settings):
    settings.data_dir.mkdir(mode=0o750)
    os.chmod(settings.data_dir, 0o750)  # whatever the umask: the operator's choice

    with umask(0o022), TestClient(create_app(settings)):
        assert mode(settings.data_dir / "authsite.db") == 0o600

    assert mode(settings.data_dir) == 0o750


def test_a_database_file_others_can_read_is_named_in_a_warning_at_start(settings, caplog):
    with TestClient(create_app(settings)):
        pass
    os.chmod(settings.data_dir / "authsite.db", 0o644)

    with caplog.at_level(logging.WARNING, logger="authsite"), TestClient(create_app(settings)):
        pass

    assert any("authsite.db" in r.getMessage() and "0644" in r.getMessage() for r in caplog.records)
