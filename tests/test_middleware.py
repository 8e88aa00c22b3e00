"""The auth middleware: request.user and request.auth on every route, one query for a
logged-in request, none for static files, and junk cookies meaning anonymous."""

from contextlib import contextmanager

import pytest
from fastapi import Request
from sqlalchemy import inspect
from sqlmodel import select
from starlette.middleware.base import BaseHTTPMiddleware

from authsite import create_app
from authsite.middleware import AuthMiddleware
from authsite.models import User
from support import log_in, statements_sent

ANONYMOUS = {"authenticated": False, "username": "", "scopes": []}


@pytest.fixture
def app(settings):
    """The standalone site plus one route of "the app's own", as an importing app would add."""
    app = create_app(settings)

    @app.get("/whoami")
    async def whoami(request: Request) -> dict:
        return {
            "authenticated": request.user.is_authenticated,
            "username": request.user.username,
            "scopes": list(request.auth.scopes),
        }

    return app


class RecordingReader:
    """Stands in for the session reader (which bypasses the engine) and records its statement."""

    def __init__(self, real, seen: list[str]):
        self.real, self.seen = real, seen

    async def find(self, token_hash, now):
        if hasattr(self.real, "lookup"):  # readers that go through the engine are seen by its events
            self.seen.append(self.real.lookup.sql)
        return await self.real.find(token_hash, now)


@contextmanager
def database_statements(site):
    """Every SQL statement the app sends while the block runs, by its engines or the session reader."""
    seen: list[str] = []
    real_reader = site.reader
    site.reader = RecordingReader(real_reader, seen)
    try:
        with statements_sent(site) as sent:
            yield seen
    finally:
        site.reader = real_reader
    seen.extend(sql for sql, _ in sent)


def whoami_with_cookie(client, cookie_header: bytes):
    client.cookies.clear()
    return client.get("/whoami", headers={"cookie": cookie_header})


def test_anonymous_request_has_an_anonymous_user_and_no_scopes(client):
    response = client.get("/whoami")
    assert response.status_code == 200
    assert response.json() == ANONYMOUS


def test_logged_in_request_has_the_user_and_their_scopes(client, make_user):
    make_user("alice", scopes=("authenticated", "admin"))
    assert log_in(client).status_code == 303

    assert client.get("/whoami").json() == {
        "authenticated": True,
        "username": "alice",
        "scopes": ["authenticated", "admin"],
    }


def test_an_authenticated_request_makes_exactly_one_select(logged_in_client, site):
    with database_statements(site) as statements:
        response = logged_in_client.get("/whoami")

    assert response.json()["authenticated"] is True
    # Within the touch interval of login, so no write either.
    assert len(statements) == 1, statements
    assert statements[0].lstrip().upper().startswith("SELECT")


def test_the_session_lookup_uses_a_unique_index_on_the_token_hash(client, site):
    def unique_token_hash_index(sync_conn) -> bool:
        inspector = inspect(sync_conn)
        indexes = inspector.get_indexes("session") + inspector.get_unique_constraints("session")
        return any(ix["column_names"] == ["token_hash"] and ix.get("unique", True) for ix in indexes)

    async def check():
        async with site.database.engine.connect() as conn:
            return await conn.run_sync(unique_token_hash_index)

    assert client.portal.call(check)


def test_static_files_never_touch_the_database(logged_in_client, site):
    with database_statements(site) as statements:
        response = logged_in_client.get("/static/authsite.css")

    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/css")
    assert statements == []


@pytest.mark.parametrize(
    "make_cookie",
    [
        lambda token: b"session=not-a-token",
        lambda token: b"session=",
        lambda token: b"session",
        lambda token: b'session="unterminated;;; =; session',
        lambda token: b"session=" + (("B" if token[0] != "B" else "C") + token[1:]).encode(),
        lambda token: b"session=" + token.encode() + b"x",
        lambda token: b"session=" + b"a" * 10240,
        lambda token: b"session=" + token[:-1].encode() + "é".encode(),
        lambda token: b"session=\xff\xfe\x00" + token.encode(),
    ],
    ids=["malformed", "empty", "no-value", "garbled-header", "tampered", "one-char-longer", "oversized-10kb",
         "non-ascii-utf8", "non-ascii-bytes"],
)
def test_a_bad_session_cookie_means_anonymous_never_an_error(logged_in_client, make_cookie):
    token = logged_in_client.cookies["session"]
    cookie = make_cookie(token)

    response = whoami_with_cookie(logged_in_client, cookie)

    assert response.status_code == 200, response.text
    assert response.json() == ANONYMOUS
    home = logged_in_client.get("/", headers={"cookie": cookie})
    assert home.status_code == 200


def test_a_deactivated_users_cookie_stops_working_on_the_next_request(logged_in_client, run_db):
    assert logged_in_client.get("/whoami").json()["authenticated"] is True

    async def deactivate(db):
        alice = (await db.exec(select(User).where(User.username == "alice"))).one()
        alice.is_active = False
        db.add(alice)
        await db.commit()

    run_db(deactivate)

    assert logged_in_client.get("/whoami").json() == ANONYMOUS
    assert logged_in_client.get("/api/me").status_code == 401


def test_the_middleware_is_pure_asgi(app):
    classes = [middleware.cls for middleware in app.user_middleware]
    assert AuthMiddleware in classes
    assert not any(isinstance(cls, type) and issubclass(cls, BaseHTTPMiddleware) for cls in classes), classes
