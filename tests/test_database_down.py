"""When the database is busy or out of reach, authsite's pages and API say so with a 503, not a 500."""

import sqlite3

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy.exc import OperationalError

from authsite import AuthSite
from authsite.db import DATABASE_DOWN_MESSAGE
from authsite.session_reader import ReaderUnavailable
from support import PASSWORD, form_token, log_in

TRY_AGAIN = "Try again in a moment"


def locked(*args, **kwargs):
    raise OperationalError("INSERT INTO throttle_hit ...", {}, sqlite3.OperationalError("database is locked"))


def refused(*args, **kwargs):
    raise ConnectionRefusedError(111, "Connect call failed ('127.0.0.1', 5432)")


@pytest.fixture
def database_down(site, monkeypatch):
    def break_it(how=locked):
        async def run(work):
            how()

        monkeypatch.setattr(site.database, "run", run)

    return break_it


def test_a_login_while_the_database_is_locked_gets_a_page_that_says_try_again(client, user, database_down):
    token = form_token(client)
    database_down()

    response = client.post("/auth/login", data={"username": "alice", "password": PASSWORD, "csrf_token": token})

    assert response.status_code == 503
    assert response.headers["retry-after"] == "5"
    assert response.headers["content-type"].startswith("text/html")
    assert TRY_AGAIN in response.text


def test_an_api_login_while_postgres_refuses_connections_gets_json_that_says_try_again(client, user, database_down):
    database_down(refused)

    response = client.post("/api/auth/login", json={"username": "alice", "password": PASSWORD})

    assert response.status_code == 503
    assert response.json() == {"detail": "The database is busy or not answering. Try again in a moment."}


def test_the_host_apps_own_database_errors_stay_its_own(tmp_path, make_settings):
    app = FastAPI()
    AuthSite(make_settings()).install(app)

    @app.get("/orders")
    async def orders():
        locked()

    with TestClient(app, raise_server_exceptions=False) as client:
        assert client.get("/orders").status_code == 500


@pytest.mark.sqlite_only
def test_a_sqlite_file_locked_past_the_busy_timeout_answers_503(client, user, settings):
    token = form_token(client)
    other = sqlite3.connect(settings.data_dir / "authsite.db", isolation_level=None)
    other.execute("BEGIN IMMEDIATE")  # another process holds the write lock, and keeps it
    try:
        response = client.post("/auth/login", data={"username": "alice", "password": PASSWORD, "csrf_token": token})
    finally:
        other.execute("ROLLBACK")
        other.close()

    assert response.status_code == 503
    assert TRY_AGAIN in response.text
    assert log_in(client).status_code == 303  # and once it is free again, logins work


# --- the same answer when the session lookup is what fails


@pytest.fixture
def lookup_fails(logged_in_client, site, monkeypatch):
    """The database stops answering after alice logged in: her next request's lookup fails."""

    async def unavailable(token_hash, now):
        raise ReaderUnavailable("connection was closed in the middle of operation")

    monkeypatch.setattr(site.reader, "find", unavailable)
    return logged_in_client


def test_a_logged_in_api_call_gets_the_same_json_503_as_anyone_when_the_lookup_fails(lookup_fails, database_down):
    logged_in = lookup_fails.get("/api/me")
    lookup_fails.cookies.clear()
    database_down(refused)
    anonymous = lookup_fails.post("/api/auth/login", json={"username": "alice", "password": PASSWORD})

    assert logged_in.status_code == anonymous.status_code == 503
    assert logged_in.headers["content-type"] == anonymous.headers["content-type"] == "application/json"
    assert logged_in.json() == anonymous.json() == {"detail": DATABASE_DOWN_MESSAGE}
    assert logged_in.headers["retry-after"] == anonymous.headers["retry-after"] == "5"


def test_a_logged_in_page_gets_the_same_503_page_as_anyone_when_the_lookup_fails(lookup_fails):
    response = lookup_fails.get("/account")

    assert response.status_code == 503
    assert response.headers["content-type"].startswith("text/html")
    assert response.headers["retry-after"] == "5"
    assert TRY_AGAIN in response.text
    assert "<html" in response.text.lower()


def test_a_logged_in_visit_to_the_host_apps_page_gets_the_503_page_when_the_lookup_fails(lookup_fails):
    # The lookup runs for every request with a cookie, the host app's pages too; it answers for them.
    response = lookup_fails.get("/")

    assert response.status_code == 503
    assert response.headers["content-type"].startswith("text/html")
    assert response.headers["retry-after"] == "5"
