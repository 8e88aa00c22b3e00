"""Helpers tests share: what a browser does to fill in and send our forms."""

import re

from fastapi.testclient import TestClient

PASSWORD = "correct horse battery"
CSRF_FIELD = re.compile(r'name="csrf_token" value="([^"]+)"')


def csrf_from(html: str) -> str:
    match = CSRF_FIELD.search(html)
    assert match, "page has no csrf_token field"
    return match.group(1)


def form_token(client: TestClient, path: str = "/auth/login") -> str:
    """The csrf_token a visitor's browser would find in the form at `path`."""
    return csrf_from(client.get(path).text)


def log_in(client: TestClient, username="alice", password=PASSWORD, *, remember=False, next_path=None):
    data = {"username": username, "password": password, "csrf_token": form_token(client)}
    if remember:
        data["remember"] = "on"
    if next_path is not None:
        data["next"] = next_path
    return client.post("/auth/login", data=data)
