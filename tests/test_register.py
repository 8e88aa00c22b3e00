"""Sign-up at /auth/register: one account per name however it is spelled, even under a rush
of simultaneous sign-ups; checked emails and passwords; nothing smuggled in; off when the
site says so."""

import asyncio
import re
import unicodedata

import httpx2
import pytest
from fastapi.testclient import TestClient
from sqlmodel import select

from authsite import create_app, strength
from authsite.accounts import EMAIL_TAKEN, USERNAME_TAKEN
from authsite.models import User
from support import FormPage, csrf_from, form_token, log_in

NEW_PASSWORD = "another long phrase 9"
SIMULTANEOUS_SIGN_UPS = 20


def sign_up(client, username="bob", password=NEW_PASSWORD, *, confirm=None, email="", **extra):
    data = {
        "username": username,
        "email": email,
        "password": password,
        "password_confirm": password if confirm is None else confirm,
        "csrf_token": form_token(client, "/auth/register"),
        **extra,
    }
    return client.post("/auth/register", data=data)


def all_users(run_db) -> list[User]:
    async def read(db):
        return list((await db.exec(select(User).order_by(User.id))).all())

    return run_db(read)


def usernames(run_db) -> list[str]:
    return [user.username for user in all_users(run_db)]


def assert_refused(response, run_db, field: str, *, users_before=()) -> str:
    """A 400 re-render with a message on `field`, and no account created."""
    assert response.status_code == 400, response.text
    message = FormPage(response.text).error_for(field)
    assert message, f"no error shown on {field}: {FormPage(response.text).errors()}"
    assert usernames(run_db) == list(users_before)
    return message


# The form


def test_register_form_has_the_fields_a_password_manager_needs(client):
    page = FormPage(client.get("/auth/register").text)

    assert page.inputs["csrf_token"]["type"] == "hidden"
    assert page.inputs["csrf_token"]["value"]
    assert page.inputs["username"]["autocomplete"] == "username"
    assert page.inputs["email"]["type"] == "email"
    for name in ("password", "password_confirm"):
        assert page.inputs[name]["type"] == "password"
        assert page.inputs[name]["autocomplete"] == "new-password"
    for name in ("username", "email", "password", "password_confirm"):
        assert page.inputs[name]["id"] in page.label_targets, f"{name} has no label"


# Success


def test_sign_up_creates_an_authenticated_user_and_logs_them_in(client, run_db):
    response = sign_up(client, "bob", email="bob@example.com")

    assert response.status_code == 303
    assert response.headers["location"] == "/"
    assert client.cookies.get("session")
    me = client.get("/api/me")
    assert me.status_code == 200
    assert me.json()["username"] == "bob"
    assert me.json()["scopes"] == ["authenticated"]
    [user] = all_users(run_db)
    assert (user.username, user.email, user.scopes, user.is_active) == (
        "bob", "bob@example.com", ["authenticated"], True
    )


def test_new_user_can_log_in_again_with_the_chosen_password(app, client):
    sign_up(client, "bob")
    with TestClient(app, base_url="http://testserver", follow_redirects=False) as other:
        assert log_in(other, "bob", NEW_PASSWORD).status_code == 303


def test_the_email_is_optional(client, run_db):
    assert sign_up(client, "bob", email="").status_code == 303
    [user] = all_users(run_db)
    assert user.email is None


def test_the_email_is_stored_normalised(client, run_db):
    assert sign_up(client, "bob", email="  Bob@EXAMPLE.com ").status_code == 303
    [user] = all_users(run_db)
    # email-validator lower-cases the domain; the local part is the owner's business.
    assert user.email == "Bob@example.com"


@pytest.mark.parametrize(
    "password",
    [
        "a long all lowercase phrase",  # no composition rule: no digit, capital or symbol needed
        "  spaces at both ends  ",
        "pässwörd mit Ümläuten und Leerzeichen",
        "日本語のパスワードです",
    ],
)
def test_any_long_enough_password_is_accepted(client, password):
    assert sign_up(client, "bob", password).status_code == 303
    client.cookies.clear()
    assert log_in(client, "bob", password).status_code == 303


# Usernames


@pytest.mark.parametrize("spelling", ["alice", "ALICE", "Alice", "Ａｌｉｃｅ", "ＡＬＩＣＥ"])
def test_a_username_taken_in_any_spelling_is_refused(client, run_db, user, spelling):
    response = sign_up(client, spelling)

    message = assert_refused(response, run_db, "username", users_before=["alice"])
    assert message == USERNAME_TAKEN
    assert "session" not in client.cookies


@pytest.mark.parametrize(
    "username",
    [
        "ab",
        "a" * 33,
        "bob smith",
        "<b>",
        "bob\x07",
        "bo\tb",
        "bob\x00",
        "bob@example",
        "",
    ],
    ids=["2 chars", "33 chars", "space", "html", "bell", "tab", "nul", "at-sign", "empty"],
)
def test_an_invalid_username_is_refused(client, run_db, username):
    response = sign_up(client, username)

    assert_refused(response, run_db, "username")
    assert "<b>" not in response.text  # what was typed comes back escaped


@pytest.mark.parametrize("username", ["bob", "b.o_b-1", "a" * 32, "Zoë", "Владимир"])
def test_letters_digits_dots_underscores_and_dashes_make_a_username(client, run_db, username):
    assert sign_up(client, username).status_code == 303
    assert usernames(run_db) == [username]


async def sign_up_at_once(app, names: list[str]) -> list[httpx2.Response]:
    """Each name from its own browser: all fetch the form first, then all submit together."""
    transport = httpx2.ASGITransport(app=app)
    browsers = [httpx2.AsyncClient(transport=transport, base_url="http://testserver") for _ in names]
    try:
        pages = await asyncio.gather(*(browser.get("/auth/register") for browser in browsers))
        posts = [
            browser.post(
                "/auth/register",
                data={
                    "username": name,
                    "password": NEW_PASSWORD,
                    "password_confirm": NEW_PASSWORD,
                    "csrf_token": csrf_from(page.text),
                },
            )
            for browser, name, page in zip(browsers, names, pages)
        ]
        return await asyncio.gather(*posts)
    finally:
        await asyncio.gather(*(browser.aclose() for browser in browsers))


@pytest.mark.parametrize(
    "spellings",
    [["carol"], ["carol", "CAROL", "Carol", "Ｃａｒｏｌ", "ｃａｒｏｌ"]],
    ids=["one spelling", "equivalent spellings"],
)
def test_simultaneous_sign_ups_of_one_name_create_exactly_one_user(app, client, run_db, spellings):
    names = [spellings[i % len(spellings)] for i in range(SIMULTANEOUS_SIGN_UPS)]

    responses = client.portal.call(sign_up_at_once, app, names)

    statuses = sorted(response.status_code for response in responses)
    assert statuses == [303] + [400] * (SIMULTANEOUS_SIGN_UPS - 1), statuses
    for response in responses:
        if response.status_code == 400:
            assert FormPage(response.text).error_for("username") == USERNAME_TAKEN
    [winner] = [names[i] for i, response in enumerate(responses) if response.status_code == 303]
    # Stored as typed, after NFKC (full-width letters become plain ones).
    assert usernames(run_db) == [unicodedata.normalize("NFKC", winner)]


# Emails


@pytest.mark.parametrize(
    "email", ["not-an-address", "bob@", "@example.com", "bob@@example.com", "bob@exa mple.com", "bob\x00@example.com"]
)
def test_an_invalid_email_is_refused_on_the_email_field(client, run_db, email):
    assert_refused(sign_up(client, "bob", email=email), run_db, "email")


@pytest.mark.parametrize("spelling", ["alice@example.com", "ALICE@example.com", "Alice@Example.COM"])
def test_an_email_already_used_is_refused_whatever_its_case(client, run_db, make_user, spelling):
    make_user("alice", email="alice@example.com")

    message = assert_refused(sign_up(client, "bob", email=spelling), run_db, "email", users_before=["alice"])
    assert message == EMAIL_TAKEN


# Passwords


@pytest.mark.parametrize(
    ("password", "confirm", "field"),
    [
        ("seven c", None, "password"),
        ("x" * 1025, None, "password"),
        ("password1", None, "password"),
        ("12345678", None, "password"),
        ("qwertyuiop", None, "password"),
        ("", None, "password"),
        (NEW_PASSWORD, NEW_PASSWORD + " ", "password_confirm"),
        (NEW_PASSWORD, "", "password_confirm"),
    ],
    ids=["7 chars", "1025 chars", "password1", "12345678", "qwertyuiop", "empty", "confirm differs", "no confirm"],
)
def test_a_refused_password_creates_no_account(client, run_db, password, confirm, field):
    assert_refused(sign_up(client, "bob", password, confirm=confirm), run_db, field)
    assert "session" not in client.cookies


def test_exactly_1024_characters_is_a_valid_password(client):
    password = "long phrase " * 85 + "abcd"
    assert len(password) == 1024
    assert sign_up(client, "bob", password).status_code == 303


# What the form may not do


@pytest.mark.parametrize(
    "smuggled",
    [{"scopes": "admin"}, {"scopes": '["admin", "super"]'}, {"is_active": "false"}, {"id": "4242"}],
    ids=["scopes", "scopes json", "is_active", "id"],
)
def test_fields_smuggled_into_the_form_are_ignored(client, run_db, smuggled):
    assert sign_up(client, "bob", **smuggled).status_code == 303

    [user] = all_users(run_db)
    assert user.scopes == ["authenticated"]
    assert user.is_active is True
    assert user.id != 4242
    assert client.get("/api/me").json()["scopes"] == ["authenticated"]


def test_a_failed_sign_up_keeps_what_was_typed_but_never_the_password(client):
    secret = "my secret phrase 77"
    response = sign_up(client, "bob", secret, confirm=secret + "x", email="bob@example.com")

    page = FormPage(response.text)
    assert response.status_code == 400
    assert page.inputs["username"]["value"] == "bob"
    assert page.inputs["email"]["value"] == "bob@example.com"
    assert "value" not in page.inputs["password"]
    assert "value" not in page.inputs["password_confirm"]
    assert secret not in response.text


def test_a_failed_sign_up_gives_a_fresh_form_that_can_be_sent_again(client, run_db):
    failed = sign_up(client, "bob", "password1")
    retry = client.post(
        "/auth/register",
        data={
            "username": "bob",
            "password": NEW_PASSWORD,
            "password_confirm": NEW_PASSWORD,
            "csrf_token": csrf_from(failed.text),
        },
    )
    assert retry.status_code == 303
    assert usernames(run_db) == ["bob"]


def test_sign_up_without_the_csrf_token_is_refused(client, run_db):
    client.get("/auth/register")
    response = client.post(
        "/auth/register", data={"username": "bob", "password": NEW_PASSWORD, "password_confirm": NEW_PASSWORD}
    )
    assert response.status_code == 403
    assert usernames(run_db) == []


def test_a_logged_in_user_is_sent_home_from_the_sign_up_page(logged_in_client):
    response = logged_in_client.get("/auth/register")
    assert response.status_code == 303
    assert response.headers["location"] == "/"


def test_a_logged_in_user_cannot_post_a_sign_up(logged_in_client, run_db):
    token = csrf_from(logged_in_client.get("/account").text)
    response = logged_in_client.post(
        "/auth/register",
        data={"username": "bob", "password": NEW_PASSWORD, "password_confirm": NEW_PASSWORD, "csrf_token": token},
    )
    assert response.status_code == 303
    assert usernames(run_db) == ["alice"]
    assert logged_in_client.get("/api/me").json()["username"] == "alice"


# Sign-up switched off


@pytest.fixture
def closed_site(make_settings):
    app = create_app(make_settings(allow_signup=False))
    with TestClient(app, base_url="http://testserver", follow_redirects=False) as closed:
        yield closed


def test_with_sign_up_off_the_register_page_is_not_found(closed_site):
    assert closed_site.get("/auth/register").status_code == 404


def test_with_sign_up_off_a_registration_post_is_not_found_and_creates_nobody(closed_site):
    token = form_token(closed_site)
    response = closed_site.post(
        "/auth/register",
        data={"username": "bob", "password": NEW_PASSWORD, "password_confirm": NEW_PASSWORD, "csrf_token": token},
    )
    assert response.status_code == 404
    assert log_in(closed_site, "bob", NEW_PASSWORD).status_code == 401


@pytest.mark.parametrize("path", ["/auth/login", "/"])
def test_with_sign_up_off_no_page_links_to_it(closed_site, path):
    page = closed_site.get(path)
    assert page.status_code == 200
    assert "/auth/register" not in page.text


@pytest.mark.parametrize("path", ["/auth/login", "/"])
def test_with_sign_up_on_the_login_page_and_nav_link_to_it(client, path):
    assert "/auth/register" in FormPage(client.get(path).text).links


def test_a_logged_in_user_sees_no_sign_up_link(logged_in_client):
    assert "/auth/register" not in FormPage(logged_in_client.get("/").text).links


def test_password_is_never_stored_in_clear(client, run_db):
    sign_up(client, "bob")
    [user] = all_users(run_db)
    assert NEW_PASSWORD not in user.password_hash
    assert user.password_hash.startswith("$argon2")



def test_a_username_typed_with_combining_accents_counts_its_letters_not_code_points(client, run_db):
    # Twenty "é" typed as e + combining acute (as some keyboards send them): 40 code points,
    # 20 letters after NFKC, so within the 32-character rule and never a database error.
    username = "e\u0301" * 20

    response = sign_up(client, username)

    assert response.status_code == 303, response.text[:300]
    assert client.get("/api/me").status_code == 200
    assert len(all_users(run_db)) == 1


@pytest.mark.parametrize("password", ["authsite2024", "bob-bob-bob-1"])
def test_passwords_built_from_the_site_or_the_username_are_refused(client, password):
    response = sign_up(client, username="bob", password=password)

    assert response.status_code == 400
    assert FormPage(response.text).error_for("password")


# Every problem at once (issue 16, item 1)


def error_summary_links(html: str) -> dict[str, str]:
    """The error summary's links: the field each points to, and what it says."""
    summary = re.search(r'<div class="error-summary"[^>]*>(.*?)</div>', html, re.S)
    assert summary, "no error summary on the page"
    return {target: re.sub(r"<[^>]+>", "", text).strip()
            for target, text in re.findall(r'<a href="#([\w-]+)">(.*?)</a>', summary.group(1), re.S)}


def test_one_submit_reports_every_field_that_is_wrong(client, run_db):
    response = sign_up(client, "x", "password", confirm="passwrod", email="not-an-email")

    assert response.status_code == 400
    errors = FormPage(response.text).errors()
    assert list(errors) == ["username", "email", "password", "password_confirm"], errors
    assert errors["password_confirm"] == "The two passwords differ."
    assert usernames(run_db) == []


def test_the_error_summary_counts_the_problems_and_links_to_each_field(client):
    response = sign_up(client, "x", "password", email="not-an-email")

    links = error_summary_links(response.text)
    assert list(links) == ["username", "email", "password"]
    errors = FormPage(response.text).errors()
    for field, text in links.items():
        assert errors[field] in text, (field, text)
    assert "3 problems" in response.text


def test_a_taken_name_and_a_taken_address_are_both_reported(client, run_db, make_user):
    make_user("alice", email="alice@example.com")

    response = sign_up(client, "alice", email="alice@example.com")

    assert FormPage(response.text).errors() == {"username": USERNAME_TAKEN, "email": EMAIL_TAKEN}
    assert usernames(run_db) == ["alice"]


def test_a_weak_password_and_a_differing_confirmation_are_both_reported(client):
    response = sign_up(client, "bob", "password1", confirm="password2")

    assert list(FormPage(response.text).errors()) == ["password", "password_confirm"]


def test_a_refused_sign_up_judges_the_password_once_and_never_hashes_it(client, site, monkeypatch):
    judged, hashed = [], []

    async def judge(password, *, user_inputs):
        judged.append(password)
        return None

    async def never_hash(password):
        hashed.append(password)
        raise AssertionError("a refused sign-up must not hash")

    monkeypatch.setattr(strength, "password_problem", judge)
    monkeypatch.setattr(site.hasher, "hash", never_hash)

    response = sign_up(client, "x", NEW_PASSWORD, email="not-an-email")

    assert response.status_code == 400
    assert judged == [NEW_PASSWORD]
    assert hashed == []


def test_a_sign_up_without_errors_shows_no_summary(client):
    page = client.get("/auth/register").text
    assert "error-summary" not in page
