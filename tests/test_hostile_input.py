"""Hostile input on every route besides the login form: a clean answer with a message,
nothing written, and the server still answering afterwards.

tests/test_bad_input.py holds the table for the login routes; this one covers sign-up,
password reset, the account and admin forms and the JSON API. Each case is one request
(method, path, headers, body) sent by a visitor, by alice, or by an admin; every case
must leave the users, their scopes, the sessions and the reset links exactly as they were.

One running site serves the whole module (building one per case would cost seconds);
a fixture puts it back to its starting state after any test that changed it."""

import asyncio
import json
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from datetime import timedelta
from pathlib import Path
from urllib.parse import urlencode

import pytest
from fastapi.testclient import TestClient
from markupsafe import escape
from sqlalchemy import delete, select, update
from sqlalchemy.engine import make_url
from sqlmodel import col

from authsite import Settings, accounts, create_app, resets, tokens
from authsite.models import PasswordReset, Session, User
from authsite.throttle import Limit
from support import PASSWORD, csrf_from, log_in

NEW_PASSWORD = "another long phrase 9"
TWENTY_MB = 20 * 1024 * 1024
FORM = {"content-type": "application/x-www-form-urlencoded"}
JSON = {"content-type": "application/json"}
# The same as conftest's: the cases fail logins on purpose and must not trip the limits.
GENEROUS_LIMITS = {
    "login_max_failures": 1000,
    "login_ip_max_failures": 1000,
    "signup_max_per_ip": 1000,
    "reset_max_per_ip": 1000,
}
TEST_HOSTS = {"allowed_hosts": "testserver"}  # the same as conftest's: TestClient's Host
INJECTIONS = {
    "sql-or": "' OR '1'='1",
    "sql-drop": "1; DROP TABLE user--",
    "jinja-expression": "{{7*7}}",
    "dollar-expression": "${7*7}",
    "jinja-statement": "{% print 1 %}",
}
CONTROL = "mal\x1b[31mlory\r\n\x7f"
USER_COLUMNS = (
    "id", "username", "username_key", "email", "email_key", "first_name", "last_name",
    "password_hash", "scopes", "is_active",
)


# ---------------------------------------------------------------------------
# Bodies a case can send

@dataclass(frozen=True)
class Json:
    value: object


@dataclass
class Huge:
    """A body of `size` bytes announced with its Content-Length, made as it is read,
    so the test sees how much of it the server took before answering."""

    size: int
    content_type: str
    consumed: int = 0

    def chunks(self) -> Iterator[bytes]:
        self.consumed = 0
        chunk = b"x" * (1024 * 1024)
        for _ in range(self.size // len(chunk)):
            self.consumed += len(chunk)
            yield chunk


@dataclass(frozen=True)
class Case:
    name: str
    method: str
    path: str  # may hold <alice_id>, <alice_session>, <reset_token>
    who: str  # whose browser sends it: "visitor", "alice" or "admin"
    headers: dict = field(default_factory=dict)
    # dict: form fields (a valid csrf_token is added unless given); bytes: a raw
    # body where b"{csrf}" becomes the token; Json; Huge.
    body: object = None
    expected: frozenset[int] = frozenset({400})
    says: str = ""  # words the answer must carry (its message)

    def __str__(self):
        return self.name


# ---------------------------------------------------------------------------
# The table

@dataclass(frozen=True)
class Route:
    """A form route and a submission it would accept: each case spoils one thing of it."""

    name: str
    path: str
    who: str
    fields: dict
    repeatable: str = ""  # a field that may be sent more than once

    def case(self, name, *, expected, says, body=None, headers=None, path=None, **changes) -> Case:
        if body is None:
            body = {**self.fields, **changes}
        return Case(f"{self.name}-{name}", "POST", path or self.path, self.who, headers or {}, body,
                    frozenset(expected), says)


REGISTER = Route("register", "/auth/register", "visitor", {
    "username": "mallory", "email": "mallory@example.com", "password": NEW_PASSWORD, "password_confirm": NEW_PASSWORD,
})
RESET_REQUEST = Route("reset-request", "/auth/reset", "visitor", {"login": "alice"})
RESET = Route("reset", "/auth/reset/<reset_token>", "visitor", {"password": NEW_PASSWORD, "password_confirm": NEW_PASSWORD})
PROFILE = Route("profile", "/account/profile", "alice", {
    "first_name": "Ada", "last_name": "Lovelace", "email": "alice@example.com",
})
PASSWORD_CHANGE = Route("password", "/account/password", "alice", {
    "current_password": PASSWORD, "new_password": NEW_PASSWORD, "new_password_confirm": NEW_PASSWORD,
})
REVOKE = Route("revoke", "/account/sessions/<alice_session>/revoke", "alice", {})
ADMIN = Route("admin", "/admin/users/<alice_id>", "admin", {"scopes": ["authenticated", "editor"], "active": "true"},
              repeatable="scopes")
FORM_ROUTES = [REGISTER, RESET_REQUEST, RESET, PROFILE, PASSWORD_CHANGE, REVOKE, ADMIN]

TOO_LARGE = "larger than 64 KiB"
TOO_MANY_FIELDS = "too many fields"
NOT_FROM_HERE = "did not come from a page of this site"
SENT_TWICE = "more than once"
SEND_A_FORM = "application/x-www-form-urlencoded"
SEND_JSON = "application/json"
NOT_AN_ID = "integer"
SAME_ANSWER = "If an account with that name or address exists"
INVALID_LINK = "invalid, already used or expired"
BAD_USERNAME = "Use only letters"
BAD_EMAIL = "@-sign"
WRONG_CURRENT = "not your current password"
DIFFER = "two passwords differ"
NOT_UTF8 = "not valid utf-8"  # a form whose bytes are not UTF-8 is refused before any field is read
BAD_SCOPE = "not a valid permission name"
BAD_ACTIVE = "must be true or false"
WRONG_LOGIN = "Wrong username or password"


def urlencoded(fields: dict) -> str:
    return urlencode(fields, doseq=True)


def every_form_route_refuses_the_shape_of_the_request() -> list[Case]:
    cases = []
    for route in FORM_ROUTES:
        valid = urlencoded(route.fields)
        first_single = next((name for name in route.fields if name != route.repeatable), "csrf_token")
        duplicated = {first_single: ["one", "two"]} if first_single != "csrf_token" else {}
        cases += [
            route.case("20mb-body", body=Huge(TWENTY_MB, SEND_A_FORM), expected={413}, says=TOO_LARGE),
            route.case("10000-fields", body=f"csrf_token={{csrf}}&{valid}&{'&'.join(['x=1'] * 10_000)}".encode(),
                       headers=FORM, expected={413}, says=TOO_MANY_FIELDS),
            route.case("form-sent-as-json", body=f"csrf_token={{csrf}}&{valid}".encode(), headers=JSON,
                       expected={415}, says=SEND_A_FORM),
            route.case("form-without-content-type", body=f"csrf_token={{csrf}}&{valid}".encode(), headers={},
                       expected={415}, says=SEND_A_FORM),
            route.case("form-as-text-plain", body=f"csrf_token={{csrf}}&{valid}".encode(),
                       headers={"content-type": "text/plain"}, expected={415}, says=SEND_A_FORM),
        ]
        if duplicated:
            cases.append(route.case(f"{first_single}-sent-twice", expected={400}, says=SENT_TWICE, **duplicated))
        else:
            cases.append(route.case("csrf-token-sent-twice", body=b"csrf_token={csrf}&csrf_token={csrf}",
                                    headers=FORM, expected={400}, says=SENT_TWICE))
        for label, value in INJECTIONS.items():
            cases.append(route.case(f"csrf-token-{label}", csrf_token=value, expected={403}, says=NOT_FROM_HERE))
    return cases


def field_cases() -> list[Case]:
    """Values no field may take, in every text field of every form."""
    cases = []

    def each(route, field_name, values, *, expected, says, also=None):
        for label, value in values:
            changes = {field_name: value, **(also(value) if also else {})}
            cases.append(route.case(f"{field_name}-{label}", expected=expected, says=says, **changes))

    overlong = [("10000-chars", "a" * 10_000)]
    nul_and_control = [("nul", "mal\x00lory"), ("control-chars", CONTROL)]
    injected = list(INJECTIONS.items())

    # Sign-up.
    each(REGISTER, "username", overlong, expected={400}, says="Use 3 to 32 characters")
    each(REGISTER, "username", nul_and_control + injected, expected={400}, says=BAD_USERNAME)
    each(REGISTER, "email", overlong + nul_and_control + injected, expected={400}, says=BAD_EMAIL)
    each(REGISTER, "password", overlong, expected={400}, says="at most 1024",
         also=lambda value: {"password_confirm": value})
    each(REGISTER, "password_confirm", injected, expected={400}, says=DIFFER)
    # Asking for a reset link: the same answer whatever was typed (no enumeration),
    # and no link is made for a login that names nobody.
    each(RESET_REQUEST, "login", overlong + nul_and_control + injected, expected={200}, says=SAME_ANSWER)
    # Setting a password from a link.
    for label, token in overlong + injected + [("nul", "%00"), ("invalid-utf8-escape", "%C3%28%FF")]:
        cases.append(RESET.case(f"token-{label}", path=f"/auth/reset/{token}", expected={400}, says=INVALID_LINK))
    each(RESET, "password", overlong, expected={400}, says="at most 1024",
         also=lambda value: {"password_confirm": value})
    each(RESET, "password_confirm", injected, expected={400}, says=DIFFER)
    # The profile form.
    for name_field in ("first_name", "last_name"):
        each(PROFILE, name_field, overlong, expected={400}, says="at most 50 characters")
        each(PROFILE, name_field, nul_and_control, expected={400}, says="control characters")
    each(PROFILE, "email", overlong + nul_and_control + injected, expected={400}, says=BAD_EMAIL)
    each(PROFILE, "current_password", overlong + injected, expected={400}, says=WRONG_CURRENT,
         also=lambda value: {"email": "alice.new@example.com"})
    # The password form.
    each(PASSWORD_CHANGE, "current_password", overlong + nul_and_control + injected, expected={400}, says=WRONG_CURRENT)
    each(PASSWORD_CHANGE, "new_password", overlong, expected={400}, says="at most 1024",
         also=lambda value: {"new_password_confirm": value})
    each(PASSWORD_CHANGE, "new_password_confirm", injected, expected={400}, says=DIFFER)
    # Ids in paths.
    for label, bad_id in [("10000-digits", "9" * 10_000), ("invalid-utf8-escape", "%C3%28"), *injected]:
        cases.append(REVOKE.case(f"id-{label}", path=f"/account/sessions/{bad_id}/revoke", expected={422}, says=NOT_AN_ID))
        cases.append(ADMIN.case(f"id-{label}", path=f"/admin/users/{bad_id}", expected={422}, says=NOT_AN_ID))
    # The admin form.
    each(ADMIN, "scopes", overlong + nul_and_control + injected, expected={400}, says=BAD_SCOPE,
         also=lambda value: {"scopes": ["authenticated", value]})
    each(ADMIN, "active", [("nul", "true\x00"), *injected], expected={400}, says=BAD_ACTIVE)
    return cases


def encoding_cases() -> list[Case]:
    """Bytes that are not UTF-8 text: invalid percent-escapes, and raw bytes no browser sends.
    Guessing what they meant (U+FFFD, or Latin-1) would store something nobody typed."""

    def raw(route: Route, label: str, encoded: bytes, *, expected=frozenset({400}), says=""):
        """The route's valid form, with the fields named in `encoded` written byte for byte."""
        replaced = {pair.split(b"=")[0].decode() for pair in encoded.split(b"&")}
        kept = urlencoded({name: value for name, value in route.fields.items() if name not in replaced})
        body = b"&".join(part for part in (b"csrf_token={csrf}", encoded, kept.encode()) if part)
        return route.case(label, body=body, headers=FORM, expected=expected, says=says)

    return [
        raw(REGISTER, "username-invalid-utf8-escape", b"username=mal%C3%28lory", says=NOT_UTF8),
        raw(REGISTER, "username-raw-latin1-byte", b"username=mal\xe9lory"),
        raw(REGISTER, "email-invalid-utf8-escape", b"email=mal%FFlory@example.com"),
        raw(REGISTER, "password-invalid-utf8-escape",
            b"password=another+long+phrase+%FF&password_confirm=another+long+phrase+%FF"),
        raw(RESET_REQUEST, "login-invalid-utf8-escape", b"login=%FF%FE", expected={200, 400}),
        raw(RESET, "password-invalid-utf8-escape", b"password=new+password+456+%C3%28&password_confirm=new+password+456+%C3%28"),
        raw(RESET, "password-raw-non-utf8-byte", b"password=new+password+456+\xff&password_confirm=new+password+456+\xff"),
        raw(PROFILE, "first_name-invalid-utf8-escape", b"first_name=Ad%C3%28"),
        raw(PROFILE, "last_name-invalid-utf8-escape", b"last_name=Lovelace%FF"),
        raw(PROFILE, "first_name-raw-non-utf8-bytes", b"first_name=Ad\xe9\xff"),
        raw(PASSWORD_CHANGE, "new_password-invalid-utf8-escape",
            b"new_password=new+password+456+%FF&new_password_confirm=new+password+456+%FF"),
        raw(ADMIN, "scopes-invalid-utf8-escape", b"scopes=editor%FF&scopes=authenticated", says=NOT_UTF8),
        raw(ADMIN, "scopes-raw-non-utf8-byte", b"scopes=edit\xe9r&scopes=authenticated", says=NOT_UTF8),
    ]


BAD_COOKIES = {
    "non-ascii": "é\u00ffl\u00e8ve",
    "huge": "A" * 10_000,
    "malformed": '"unterminated; =; ;;; session; =novalue',
    "injection": "' OR '1'='1",
}


def cookie_cases() -> list[Case]:
    """A garbled cookie is no cookie: the request is anonymous, never an error."""
    cases = []
    for label, value in BAD_COOKIES.items():
        cases += [
            # The visitor's CSRF cookie replaced: the form's token no longer matches.
            REGISTER.case(f"csrf-cookie-{label}", headers={"cookie": f"csrftoken={value}".encode()}, expected={403},
                          says=NOT_FROM_HERE),
            # alice's session cookie replaced: she is anonymous, sent to log in.
            PROFILE.case(f"session-cookie-{label}", headers={"cookie": f"session={value}".encode()}, expected={303}, says=""),
            ADMIN.case(f"session-cookie-{label}", headers={"cookie": f"session={value}".encode()}, expected={303}, says=""),
            Case(f"api-login-cookie-{label}", "POST", "/api/auth/login", "visitor",
                 {"cookie": f"session={value}; csrftoken={value}".encode()},
                 Json({"username": "alice", "password": "not the password 1"}), frozenset({401}), WRONG_LOGIN),
            # Logging out a garbled cookie ends nobody's session, alice's least of all.
            Case(f"api-logout-cookie-{label}", "POST", "/api/auth/logout", "alice", {"cookie": f"session={value}".encode()},
                 Json({}), frozenset({204}), ""),
        ]
    return cases


def api_cases() -> list[Case]:
    def login(name, body, expected, says, headers=None):
        return Case(f"api-login-{name}", "POST", "/api/auth/login", "visitor", headers or {}, body,
                    frozenset(expected), says)

    def logout(name, body, expected, says, headers=None):
        return Case(f"api-logout-{name}", "POST", "/api/auth/logout", "alice", headers or {}, body,
                    frozenset(expected), says)

    credentials = json.dumps({"username": "alice", "password": PASSWORD}).encode()
    cases = [
        login("20mb-body", Huge(TWENTY_MB, SEND_JSON), {413}, TOO_LARGE),
        login("without-content-type", credentials, {415}, SEND_JSON, headers={}),
        login("as-multipart", credentials, {415}, SEND_JSON, headers={"content-type": "multipart/form-data; boundary=x"}),
        login("as-json-lookalike-type", credentials, {415}, SEND_JSON, headers={"content-type": "application/jsonx"}),
        login("raw-non-utf8-byte-in-a-string", b'{"username": "al\xffice", "password": "x"}', {400},
              "not valid JSON", headers=JSON),
        login("latin1-body-claiming-latin1", '{"username": "alicé", "password": "x"}'.encode("latin-1"), {400},
              "not valid JSON", headers={"content-type": "application/json; charset=latin-1"}),
        # A Cyrillic "а" is not an "a": the look-alike name never opens alice's account.
        login("cyrillic-look-alike-of-alice", Json({"username": "\u0430lice", "password": PASSWORD}), {401}, WRONG_LOGIN),
        logout("20mb-body", Huge(TWENTY_MB, SEND_JSON), {413}, TOO_LARGE),
        logout("as-form", b"x=1", {415}, SEND_JSON, headers=FORM),
        logout("as-text-plain", b"{}", {415}, SEND_JSON, headers={"content-type": "text/plain"}),
        logout("truncated-json", b"{", {400}, "not valid JSON", headers=JSON),
        logout("raw-non-utf8-bytes", b"\xff\xfe\x00{", {400}, "not valid JSON", headers=JSON),
        logout("json-array", Json([]), {422}, ""),
        logout("deeply-nested-json", b"[" * 30_000 + b"]" * 30_000, {400, 422}, "", headers=JSON),
    ]
    # "{{7*7}}" as a name and "alice' OR..." are in test_bad_input.py; these are the rest.
    for label in ("sql-drop", "dollar-expression", "jinja-statement"):
        body = Json({"username": INJECTIONS[label], "password": PASSWORD})
        cases.append(login(f"username-{label}", body, {401}, WRONG_LOGIN))
    for label, value in INJECTIONS.items():
        cases.append(login(f"password-{label}", Json({"username": "alice", "password": value}), {401}, WRONG_LOGIN))
    return cases


CASES = every_form_route_refuses_the_shape_of_the_request() + field_cases() + encoding_cases() + cookie_cases() + api_cases()


# ---------------------------------------------------------------------------
# The running site

@dataclass
class Stage:
    """The site, three browsers on it, and the starting state of its tables."""

    site: object
    browsers: dict[str, TestClient]
    reset_token: str = ""
    baseline: dict = field(default_factory=dict)

    def db(self, work):
        async def in_app_loop():
            async with self.site.database.sessionmaker() as db:
                return await work(db)

        return self.browsers["visitor"].portal.call(in_app_loop)

    def snapshot(self) -> dict:
        return self.db(snapshot)

    def new_browser(self) -> TestClient:
        browser = TestClient(self.browsers["visitor"].app, base_url="http://testserver", follow_redirects=False)
        browser.portal = self.browsers["visitor"].portal
        return browser

    def user_id(self, username: str) -> int:
        return next(row["id"] for row in self.baseline["users"] if row["username"] == username)

    def current_session_id(self, who: str) -> int:
        token_hash = tokens.hash_token(self.browsers[who].cookies["session"])

        async def find(db):
            conn = await db.connection()
            return (await conn.execute(select(Session.id).where(Session.token_hash == token_hash))).scalar_one()

        return self.db(find)

    def path_of(self, case: Case) -> str:
        path = case.path.replace("<alice_id>", str(self.user_id("alice"))).replace("<reset_token>", self.reset_token)
        if "<alice_session>" in path:
            path = path.replace("<alice_session>", str(self.current_session_id("alice")))
        return path

    def send(self, case: Case):
        browser = self.browsers[case.who]
        page = "/auth/register" if case.who == "visitor" else "/account"
        token = csrf_from(browser.get(page).text)
        if "cookie" in case.headers:
            # The garbled cookie replaces the browser's own; a throwaway browser
            # keeps whatever the answer sets out of the real one's jar.
            browser = self.new_browser()
        path, body, headers = self.path_of(case), case.body, dict(case.headers)
        if isinstance(body, dict):
            data = {"csrf_token": token, **body}
            return browser.request(case.method, path, content=urlencoded(data).encode(), headers={**FORM, **headers})
        if isinstance(body, bytes):
            return browser.request(case.method, path, content=body.replace(b"{csrf}", token.encode()), headers=headers)
        if isinstance(body, Json):
            return browser.request(case.method, path, content=json.dumps(body.value).encode(), headers={**JSON, **headers})
        if isinstance(body, Huge):
            headers |= {"content-type": body.content_type, "content-length": str(body.size)}
            return browser.request(case.method, path, content=body.chunks(), headers=headers)
        raise TypeError(body)

    def make_ready(self) -> None:
        """Put the site back as it started if a test (or a bug) changed it."""
        self.browsers["visitor"].cookies.clear()
        logged_in = all("session" in self.browsers[who].cookies for who in ("alice", "admin"))
        if self.baseline:
            now = self.snapshot()
            if now == self.baseline and logged_in:
                return
            if now["users"] != self.baseline["users"]:
                self.db(lambda db: restore_users(db, self.baseline["users"]))
        for who, username in (("alice", "alice"), ("admin", "root")):
            me = self.browsers[who].get("/api/me")
            if me.status_code != 200 or me.json()["username"] != username:
                self.browsers[who].cookies.clear()
                assert log_in(self.browsers[who], username).status_code == 303
        if not self.db(lambda db: resets.get_user_by_reset_token(db=db, token=self.reset_token)):
            self.reset_token = self.db(new_reset_link_for_alice)
        self.baseline = self.snapshot()


async def snapshot(db) -> dict:
    conn = await db.connection()
    user_columns = [User.__table__.c[name] for name in USER_COLUMNS]
    users = (await conn.execute(select(*user_columns).order_by(User.__table__.c.id))).mappings().all()
    live_sessions = (await conn.execute(select(Session.id, Session.user_id).order_by(Session.id))).all()
    links = (await conn.execute(select(PasswordReset.token_hash).order_by(PasswordReset.token_hash))).scalars().all()
    return {"users": [dict(row) for row in users], "sessions": [tuple(row) for row in live_sessions], "resets": list(links)}


async def restore_users(db, rows: list[dict]) -> None:
    conn = await db.connection()
    await conn.execute(delete(User).where(col(User.id).not_in([row["id"] for row in rows])))
    for row in rows:
        await conn.execute(update(User).where(User.id == row["id"]).values(**row))
    await db.commit()


async def new_reset_link_for_alice(db) -> str:
    alice = await accounts.get_user_by_username(db, "alice")
    return await resets.create_reset_token(db=db, user=alice)


async def wipe_postgres_schema(url: str) -> None:
    import asyncpg

    dsn = make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute("DROP SCHEMA public CASCADE; CREATE SCHEMA public")
    finally:
        await conn.close()


@pytest.fixture(scope="module")
def stage(tmp_path_factory, postgres_url) -> Iterator[Stage]:
    data_dir: Path = tmp_path_factory.mktemp("hostile") / "data"
    if postgres_url:
        asyncio.run(wipe_postgres_schema(postgres_url))
    database_url = postgres_url or f"sqlite+aiosqlite:///{data_dir / 'authsite.db'}"
    # The admin route's form grants `editor`, which this site lets a plain admin hand out.
    settings = Settings(_env_file=None, data_dir=data_dir, database_url=database_url, admin_grantable_scopes="editor",
                        **GENEROUS_LIMITS, **TEST_HOSTS)
    app = create_app(settings)
    with TestClient(app, base_url="http://testserver", follow_redirects=False) as visitor:
        stage = Stage(site=app.state.authsite, browsers={"visitor": visitor})
        # Every case here may post a new password for alice: no limit on tries (not the test).
        stage.site.limits = replace(stage.site.limits, new_password=Limit(10**6, timedelta(minutes=15)))

        async def make_users(db):
            for name, email, scopes in (("alice", "alice@example.com", ("authenticated",)),
                                        ("root", None, ("authenticated", "admin"))):
                await accounts.create_user(db=db, hasher=stage.site.hasher, username=name, password=PASSWORD,
                                           email=email, scopes=scopes)

        stage.db(make_users)
        stage.browsers |= {"alice": stage.new_browser(), "admin": stage.new_browser()}
        stage.make_ready()
        yield stage


@pytest.fixture
def world(stage) -> Iterator[Stage]:
    """The module's site, as it started: alice and an admin logged in, a live reset link for alice."""
    yield stage  # made ready when built, and again after every test
    stage.make_ready()


# ---------------------------------------------------------------------------
# The tests

@pytest.mark.parametrize("case", CASES, ids=str)
def test_hostile_input_gets_a_clean_answer_and_changes_nothing(world, case):
    before = world.snapshot()

    response = world.send(case)

    assert response.status_code in case.expected, (
        f"answered {response.status_code} {response.headers.get('location', '')}: {message_of(response)[-300:]}"
    )
    assert "Traceback" not in response.text
    assert case.says.lower() in response.text.lower(), f"the answer does not say {case.says!r}"
    if response.status_code >= 400:
        assert message_of(response), "a refusal must say why"
    if response.status_code == 303:
        assert response.headers["location"].startswith("/auth/login")
    if isinstance(case.body, Huge):
        assert case.body.consumed < case.body.size, "the server read the whole oversized body"
    # Afterwards: nothing written, and the site still answers everyone.
    assert world.snapshot() == before
    assert world.browsers["visitor"].get("/healthz").status_code == 200
    assert world.browsers["alice"].get("/api/me").json()["username"] == "alice"


def sign_up(browser: TestClient, username: str, password: str = NEW_PASSWORD):
    token = csrf_from(browser.get("/auth/register").text)
    form = {"username": username, "password": password, "password_confirm": password, "csrf_token": token}
    return browser.post("/auth/register", data=form)


def message_of(response) -> str:
    if response.headers.get("content-type", "").startswith("application/json"):
        return str(response.json().get("detail", ""))
    return response.text.strip()


@pytest.mark.parametrize("value", INJECTIONS.values(), ids=INJECTIONS.keys())
def test_injection_shaped_names_are_stored_as_typed_and_never_run(world, value):
    alice = world.browsers["alice"]
    token = csrf_from(alice.get("/account").text)

    saved = alice.post("/account/profile", data={"first_name": value, "last_name": value,
                                                 "email": "alice@example.com", "csrf_token": token})

    assert saved.status_code == 303
    stored = world.db(lambda db: accounts.get_user_by_username(db, "alice"))
    assert (stored.first_name, stored.last_name) == (value, value)
    # Shown back literally (escaped), so nothing evaluated it: "{{7*7}}" run would read 49.
    assert str(escape(value)) in alice.get("/account").text
    assert [row["id"] for row in world.snapshot()["users"]] == [row["id"] for row in world.baseline["users"]]


@pytest.mark.parametrize("label", ["sql-or", "sql-drop", "jinja-statement"])  # the others are too short
def test_an_injection_shaped_password_is_an_ordinary_password(world, label):
    password = INJECTIONS[label]

    assert sign_up(world.new_browser(), "mallory", password).status_code == 303

    stranger = world.new_browser()
    assert log_in(stranger, "mallory", password).status_code == 303
    assert log_in(world.new_browser(), "mallory", password.replace("1", "2")).status_code == 401
    assert stranger.get("/api/me").json()["username"] == "mallory"


@pytest.mark.parametrize("spelling", ["\uff41\uff4c\uff49\uff43\uff45", "\uff21lice", "ALICE"],
                         ids=["full-width", "one-full-width-letter", "upper-case"])
def test_a_sign_up_as_alice_in_another_width_or_case_is_taken(world, spelling):
    browser = world.new_browser()

    response = sign_up(browser, spelling)

    assert response.status_code == 400
    assert "taken" in response.text
    assert world.snapshot()["users"] == world.baseline["users"]


@pytest.mark.parametrize("look_alike", ["\u0430lice", "al\u0131ce", "\u0251lice"],
                         ids=["cyrillic-a", "dotless-i", "latin-alpha"])
def test_a_look_alike_of_alice_is_someone_else_or_refused_and_never_opens_alices_account(world, look_alike):
    browser = world.new_browser()

    response = sign_up(browser, look_alike)

    assert response.status_code in (303, 400)
    alice = next(row for row in world.snapshot()["users"] if row["username"] == "alice")
    assert alice == next(row for row in world.baseline["users"] if row["username"] == "alice")
    if response.status_code == 303:
        me = browser.get("/api/me").json()
        assert me["username"] == look_alike
        assert me["id"] != alice["id"]
    # Neither the look-alike's password nor alice's own opens alice's account by that name.
    for password in (NEW_PASSWORD, PASSWORD):
        stranger = world.new_browser()
        log_in(stranger, look_alike, password)
        assert stranger.get("/api/me").json().get("id") != alice["id"]


@pytest.mark.parametrize("look_alike", ["alice\u200b", "ali\u00adce", "\u202ealice"],
                         ids=["zero-width-space", "soft-hyphen", "right-to-left-override"])
def test_a_name_padded_with_invisible_characters_is_refused(world, look_alike):
    browser = world.new_browser()

    response = sign_up(browser, look_alike)

    assert response.status_code == 400
    assert BAD_USERNAME in response.text
    assert world.snapshot()["users"] == world.baseline["users"]
