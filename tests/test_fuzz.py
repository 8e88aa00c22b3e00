"""A fuzz pass over the public inputs: whatever text, bytes, JSON, cookies or headers
arrive, the answer is never a 5xx, and garbage never starts a session.

Each test builds its site once (the usual fixtures) and runs a bounded, derandomised
hypothesis property inside it, so the run is the same every time and stays short."""

import json

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import func
from sqlmodel import select

from authsite.models import PasswordReset, Session, User
from support import csrf_from, form_token


def fuzz(*, examples: int) -> settings:
    """Derandomised: CI and a laptop try the same examples; no example database is kept."""
    return settings(
        max_examples=examples,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much],
    )


STRONG_PASSWORDS = ["another long phrase 9", "new password 456"]

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=40),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4),
    max_leaves=12,
)
texts = st.text(min_size=1, max_size=80)
login_bodies = st.one_of(
    st.fixed_dictionaries({"username": texts, "password": texts}, optional={"remember": st.booleans()}),
    st.fixed_dictionaries({"username": json_values, "password": json_values}, optional={"remember": json_values}),
    json_values,
)
# What a form field can hold: any text, now and then nothing or the field twice.
field_values = st.one_of(texts, texts, texts, texts, st.just(""), st.lists(st.text(max_size=20), min_size=2, max_size=3))
# Raw form bodies: bytes anywhere, or raw bytes as the values of the fields read.
raw_login_forms = st.one_of(
    st.binary(max_size=300),
    st.builds(lambda name, password: b"username=" + name + b"&password=" + password,
              st.binary(max_size=60), st.binary(max_size=60)),
)
# Bytes an HTTP server passes on in a header value: visible ASCII, space, tab and
# bytes 0x80-0xFF (servers refuse NUL, CR, LF and other controls before the app sees them).
HEADER_CHARS = "\t" + "".join(chr(c) for c in range(0x20, 0x7F)) + "".join(chr(c) for c in range(0x80, 0x100))
header_values = st.text(alphabet=HEADER_CHARS, max_size=200).map(lambda text: text.encode("latin-1"))


def count_rows(run_db, model) -> int:
    async def count(db):
        return (await db.exec(select(func.count()).select_from(model))).one()

    return run_db(count)


def test_api_login_never_answers_5xx_and_garbage_json_never_logs_in(client, user, run_db):
    @fuzz(examples=120)
    @given(body=login_bodies)
    def post(body):
        response = client.post("/api/auth/login", content=json.dumps(body).encode(),
                               headers={"content-type": "application/json"})

        assert response.status_code < 500, response.text[:300]
        assert response.status_code != 200
        assert "session" not in response.cookies

    post()
    assert count_rows(run_db, Session) == 0


def test_api_login_never_answers_5xx_whatever_the_bytes_and_content_type(client, user, run_db):
    content_types = st.sampled_from(["application/json", "application/json; charset=latin-1", "text/plain",
                                     "application/x-www-form-urlencoded", "", "multipart/form-data"])

    @fuzz(examples=150)
    @given(body=st.binary(max_size=400), content_type=content_types)
    def post(body, content_type):
        response = client.post("/api/auth/login", content=body, headers={"content-type": content_type})

        assert response.status_code < 500, response.text[:300]
        assert "session" not in response.cookies

    post()
    assert count_rows(run_db, Session) == 0


def test_login_form_never_answers_5xx_and_garbage_never_logs_in(client, user, run_db):
    token = form_token(client)
    forms = st.fixed_dictionaries(
        {"username": field_values, "password": field_values},
        optional={"remember": texts, "next": texts, "csrf_token": field_values},
    )

    @fuzz(examples=100)
    @given(form=forms, extra=st.dictionaries(st.text(max_size=10), st.text(max_size=20), max_size=3))
    def post(form, extra):
        response = client.post("/auth/login", data={"csrf_token": token, **extra, **form})

        assert response.status_code < 500, response.text[:300]
        assert response.status_code != 303
        assert "session" not in response.cookies

    post()
    assert count_rows(run_db, Session) == 0


def test_login_form_never_answers_5xx_whatever_the_raw_body(client, user, run_db):
    token = form_token(client).encode()

    @fuzz(examples=150)
    @given(body=raw_login_forms)
    def post(body):
        response = client.post("/auth/login", content=b"csrf_token=" + token + b"&" + body,
                               headers={"content-type": "application/x-www-form-urlencoded"})

        assert response.status_code < 500, response.text[:300]
        assert "session" not in response.cookies

    post()
    assert count_rows(run_db, Session) == 0


@st.composite
def sign_ups(draw) -> dict:
    """Mostly garbage; now and then a name and password that could be a real sign-up."""
    username = draw(st.one_of(st.text(max_size=40), st.from_regex(r"[a-z][a-z0-9._-]{2,12}", fullmatch=True)))
    password = draw(st.one_of(st.text(max_size=60), st.sampled_from(STRONG_PASSWORDS)))
    confirm = draw(st.one_of(st.just(password), st.text(max_size=20)))
    form = {"username": username, "password": password, "password_confirm": confirm}
    form["email"] = draw(st.one_of(st.just(""), st.text(max_size=40), st.emails()))
    return form


def test_sign_up_never_answers_5xx_and_writes_only_a_whole_account(client, user, run_db):
    browser = {"token": form_token(client, "/auth/register")}

    @fuzz(examples=100)
    @given(form=sign_ups())
    def post(form):
        users, sessions = count_rows(run_db, User), count_rows(run_db, Session)

        response = client.post("/auth/register", data={**form, "csrf_token": browser["token"]})

        assert response.status_code < 500, response.text[:300]
        if response.status_code == 303:
            # A real sign-up after all: one whole account, logged in.
            assert client.get("/api/me").json()["username"] == form["username"].strip()
            assert (count_rows(run_db, User), count_rows(run_db, Session)) == (users + 1, sessions + 1)
            client.cookies.clear()
            browser["token"] = csrf_from(client.get("/auth/register").text)
        else:
            assert response.status_code in (400, 403, 413)
            assert "session" not in response.cookies
            assert (count_rows(run_db, User), count_rows(run_db, Session)) == (users, sessions)

    post()


def test_reset_requests_never_answer_5xx_and_garbage_gets_no_link(client, make_user, run_db):
    make_user("alice", email="alice@example.com")
    token = form_token(client, "/auth/reset")

    @fuzz(examples=150)
    @given(login=field_values, extra=st.dictionaries(st.text(max_size=10), st.text(max_size=20), max_size=3))
    def post(login, extra):
        response = client.post("/auth/reset", data={"csrf_token": token, **extra, "login": login})

        assert response.status_code < 500, response.text[:300]

    post()
    assert count_rows(run_db, PasswordReset) == 0


def test_cookies_and_headers_never_cause_a_5xx_and_garbage_cookies_log_no_one_in(client, user, run_db):
    headers = st.fixed_dictionaries({}, optional={
        "cookie": st.one_of(header_values, header_values.map(lambda value: b"session=" + value)),
        "user-agent": header_values,
        "accept": header_values,
        "origin": header_values,
        "sec-fetch-site": header_values,
        "x-forwarded-for": header_values,
        "host": header_values,
        "content-type": header_values,
    })
    pages = st.sampled_from(["/", "/auth/login", "/auth/register", "/auth/reset", "/account", "/admin/users", "/api/me"])

    @fuzz(examples=200)
    @given(path=pages, sent=headers)
    def visit(path, sent):
        client.cookies.clear()
        page = client.get(path, headers=sent)
        login = client.post("/api/auth/login", content=b'{"username": "alice", "password": "wrong password 1"}',
                            headers={"content-type": "application/json", **sent})
        me = client.get("/api/me", headers={"cookie": sent["cookie"]} if "cookie" in sent else {})

        assert page.status_code < 500, page.text[:300]
        assert login.status_code < 500, login.text[:300]
        assert me.status_code == 401

    visit()
    assert count_rows(run_db, Session) == 0
