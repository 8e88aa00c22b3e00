"""What the command line checks before it opens the database or listens: that the data folder can
hold authsite's files and that the address is free. Each problem is one line for the operator;
found here, not as an OSError deep in a start that would blame "the database"."""

import errno
import ipaddress
import os
import socket
import tempfile
from pathlib import Path

from authsite.files import make_private_dir


def data_dir_problem(data_dir: Path) -> str | None:
    """Why authsite cannot keep its files in `data_dir` (made if missing, as at any start), or None."""
    path = data_dir.absolute()
    shown = repr(str(path))
    try:
        existing = next(p for p in (path, *path.parents) if p.exists() or p.is_symlink())
        is_dir, is_file = existing.is_dir(), existing.is_file()
    except OSError as exc:  # a folder on the way that this user may not look into
        return f"AUTHSITE_DATA_DIR: {shown} cannot be reached ({_reason(exc)})"
    if not is_dir:
        kind = "is a file" if is_file else "is not a folder"
        if existing == path:
            return f"AUTHSITE_DATA_DIR: {shown} {kind}; it must be a folder"
        return f"AUTHSITE_DATA_DIR: {shown} cannot be created: {existing} {kind}"
    try:
        make_private_dir(path)
    except OSError as exc:
        return f"AUTHSITE_DATA_DIR: {shown} cannot be created ({_reason(exc)})"
    try:
        with tempfile.TemporaryFile(dir=path):
            pass
    except OSError as exc:
        return f"AUTHSITE_DATA_DIR: {shown}: this user (uid {os.geteuid()}) cannot write in it ({_reason(exc)})"
    return None


def listen_problem(host: str, port: int) -> str | None:
    """Why the server could not listen on host:port, found by binding there first, or None.
    SO_REUSEADDR as uvicorn sets it: a port left in TIME_WAIT by a stopped server is free."""
    where = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    try:
        family, kind, proto, _, address = socket.getaddrinfo(
            host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )[0]
    except socket.gaierror as exc:
        return f"AUTHSITE_HOST: cannot listen on {where} ({exc.strerror.lower()})"
    with socket.socket(family, kind, proto) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(address)
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                return f"AUTHSITE_PORT: {where} is already in use (another server, or authsite already running?)"
            if exc.errno == errno.EADDRNOTAVAIL:
                return f"AUTHSITE_HOST: cannot listen on {where}: {host} is not an address of this machine"
            if exc.errno == errno.EACCES:
                return f"AUTHSITE_PORT: cannot listen on {where}: ports below 1024 need more rights; use 8000, say"
            return f"AUTHSITE_HOST: cannot listen on {where} ({_reason(exc)})"
    return None


def is_loopback(host: str) -> bool:
    """Whether only this machine can reach `host` (a name other than localhost may resolve anywhere)."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _reason(exc: OSError) -> str:
    return os.strerror(exc.errno).lower() if exc.errno else str(exc)
