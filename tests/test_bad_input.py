"""Bad input on the login routes: always a clean 4xx, never a 500, and nothing written.

Each case is one request a careless script or a hostile client might send. After
every one the server must still answer and no session may have been started."""

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from urllib.parse import urlencode

import pytest
from sqlalchemy import func
from sqlmodel import select

from authsite.models import Session
from support import CSRF_FIELD, PASSWORD, form_token

LIMIT = 64 * 1024
FORM = {"content-type": "application/x-www-form-urlencoded"}
JSON = {"content-type": "application/json"}


@dataclass(frozen=True)
class Case:
    name: str
    send: Callable  # (client) -> response
    expected: frozenset[int]

    def __str__(self):
        return self.name


def form_login(**fields):
    """A login form post with this visitor's valid token, so only the named fault is wrong."""

    def send(client):
        data = {"username": "alice", "password": PASSWORD, "csrf_token": form_token(client), **fields}
        return client.post("/auth/login", data=data)

    return send


def api_login(**fields):
    def send(client):
        return client.post("/api/auth/login", json={"username": "alice", "password": PASSWORD, **fields})

    return send


def raw_form(body: Callable[[str], bytes | Iterator[bytes]], headers=FORM):
    """A form whose body we write ourselves; `body(token)` gets the visitor's csrf token."""

    def send(client):
        return client.post("/auth/login", content=body(form_token(client)), headers=headers)

    return send


def raw_api(body: bytes | Callable[[], Iterator[bytes]], headers=JSON):
    def send(client):
        return client.post("/api/auth/login", content=body() if callable(body) else body, headers=headers)

    return send


def chunks(data: bytes, size: int = 8192) -> Iterator[bytes]:
    """A streamed body: httpx sends it chunked, with no Content-Length up front."""
    for start in range(0, len(data), size):
        yield data[start : start + size]


def oversized_form(token: str) -> bytes:
    return urlencode({"csrf_token": token, "username": "alice", "password": "x" * (LIMIT + 1)}).encode()


OVERSIZED_JSON = json.dumps({"username": "alice", "password": "x" * (LIMIT + 1)}).encode()


def with_file_upload(client):
    data = {"username": "alice", "password": PASSWORD, "csrf_token": form_token(client)}
    return client.post("/auth/login", data=data, files={"avatar": ("me.png", b"\x89PNG....", "image/png")})


def with_username_as_file(client):
    data = {"password": PASSWORD, "csrf_token": form_token(client)}
    return client.post("/auth/login", data=data, files={"username": ("alice.txt", b"alice", "text/plain")})


def too_many_fields(token: str) -> bytes:
    fields = {"csrf_token": token, "username": "alice", "password": PASSWORD}
    fields.update({f"extra{n}": "x" for n in range(1000)})
    return urlencode(fields).encode()


S = frozenset
CASES = [
    # Size: 413 whether the length is declared or only discovered while reading.
    Case("form-over-64k-with-length", raw_form(oversized_form), S({413})),
    Case("form-over-64k-streamed", raw_form(lambda token: chunks(oversized_form(token))), S({413})),
    Case("api-over-64k-with-length", raw_api(OVERSIZED_JSON), S({413})),
    Case("api-over-64k-streamed", raw_api(lambda: chunks(OVERSIZED_JSON)), S({413})),
    # Shape of the form.
    Case("form-username-twice", form_login(username=["alice", "bob"]), S({400})),
    Case("form-password-twice", form_login(password=[PASSWORD, "other password"]), S({400})),
    Case("form-csrf-token-twice", raw_form(lambda t: f"csrf_token={t}&csrf_token={t}&username=alice&password=x".encode()), S({400})),
    Case("form-with-file-upload", with_file_upload, S({400})),
    Case("form-username-as-file", with_username_as_file, S({400})),
    Case("form-too-many-fields", raw_form(too_many_fields), S({400, 413})),
    Case("form-as-json", raw_form(lambda t: json.dumps({"csrf_token": t, "username": "alice"}).encode(), JSON), S({415})),
    Case("form-as-text-plain", raw_form(lambda t: f"csrf_token={t}".encode(), {"content-type": "text/plain"}), S({415})),
    Case("form-without-content-type", raw_form(lambda t: f"csrf_token={t}".encode(), {}), S({415})),
    Case("form-invalid-utf8", raw_form(lambda t: f"csrf_token={t}&username=%FF%FE&password=%C0%AF".encode()), S({400, 401})),
    # Shape of the JSON.
    Case("api-as-form", lambda c: c.post("/api/auth/login", data={"username": "alice", "password": PASSWORD}), S({415})),
    Case("api-json-array", raw_api(b'["alice", "correct horse battery"]'), S({422})),
    Case("api-json-null", raw_api(b"null"), S({422})),
    Case("api-deeply-nested-json", raw_api(b"[" * 30_000 + b"]" * 30_000), S({400, 422})),
    Case("api-huge-integer", raw_api(b'{"username": "alice", "password": ' + b"9" * 5000 + b"}"), S({400, 422})),
    Case("api-duplicate-keys", raw_api(b'{"username": "alice", "username": "bob", "password": "x"}'), S({400, 401, 422})),
    # Odd field values: a normal failure, never a 500.
    Case("form-username-10k-chars", form_login(username="a" * 10_000), S({401})),
    Case("api-username-10k-chars", api_login(username="a" * 10_000), S({401, 422})),
    Case("form-password-10k-chars", form_login(password="p" * 10_000), S({401})),
    Case("api-password-10k-chars", api_login(password="p" * 10_000), S({401, 422})),
    Case("form-nul-in-username", form_login(username="ali\x00ce"), S({400, 401})),
    Case("api-nul-in-username", api_login(username="ali\x00ce"), S({400, 401, 422})),
    Case("form-nul-only-username", form_login(username="\x00"), S({400, 401})),
    Case("form-nul-in-password", form_login(password="correct\x00horse battery"), S({400, 401})),
    Case("api-nul-in-password", api_login(password="correct\x00horse battery"), S({400, 401, 422})),
    # Two passwords that differ by a trailing NUL must not both open the account.
    Case("form-password-with-trailing-nul", form_login(password=PASSWORD + "\x00"), S({400, 401})),
    Case("api-password-with-trailing-nul", api_login(password=PASSWORD + "\x00"), S({400, 401, 422})),
    Case("form-control-chars-in-username", form_login(username="al\x1b[31mice\r\n\x7f"), S({400, 401})),
    Case("api-control-chars-in-username", api_login(username="al\x1b[31mice\r\n\x7f"), S({400, 401, 422})),
    Case("form-control-chars-in-password", form_login(password="\x01\x02\x1b\r\n\x7f" * 3), S({400, 401})),
    Case("api-lone-surrogate-in-password", raw_api(b'{"username": "alice", "password": "\\ud800\\udc00\\ud800"}'), S({400, 401, 422})),
    Case("form-sql-injection-username", form_login(username="' OR 1=1 --"), S({401})),
    Case("api-sql-injection-username", api_login(username="alice' OR '1'='1"), S({401})),
    Case("form-sql-injection-password", form_login(password="' OR '1'='1' --"), S({401})),
    Case("form-template-injection-username", form_login(username="{{7*7}}"), S({401})),
    Case("api-template-injection-username", api_login(username="{{7*7}}"), S({401})),
]


def count_sessions(run_db) -> int:
    async def count(db):
        return (await db.exec(select(func.count()).select_from(Session))).one()

    return run_db(count)


@pytest.mark.parametrize("case", CASES, ids=str)
def test_bad_input_gets_a_clean_4xx_and_changes_nothing(client, user, run_db, case):
    response = case.send(client)

    assert response.status_code in case.expected, response.text[:500]
    assert "Traceback" not in response.text
    assert "session" not in response.cookies
    assert client.get("/healthz").status_code == 200
    assert client.get("/api/me").status_code == 401
    assert count_sessions(run_db) == 0


@pytest.mark.parametrize("send", [form_login(username="{{7*7}}"), api_login(username="{{7*7}}")], ids=["form", "api"])
def test_a_template_shaped_username_is_never_evaluated(client, user, send):
    response = send(client)

    page = CSRF_FIELD.sub("", response.text)  # random tokens could contain "49" by chance
    assert "49" not in page


def test_a_template_shaped_username_is_shown_back_as_typed(client, user):
    page = form_login(username="{{7*7}}")(client).text

    assert 'value="{{7*7}}"' in page


def test_markup_in_a_username_is_escaped_when_shown_back(client, user):
    page = form_login(username='"><script>alert(1)</script>')(client).text

    assert "<script>alert(1)</script>" not in page
    assert "&lt;script&gt;" in page


def test_the_right_password_still_works_after_a_run_of_bad_requests(client, user, run_db):
    for case in CASES[:10]:
        assert case.send(client).status_code in case.expected

    response = form_login()(client)

    assert response.status_code == 303
    assert client.get("/api/me").json()["username"] == "alice"
    assert count_sessions(run_db) == 1
