"""Forgotten passwords: the same answer for every login asked about, a mailed single-use link
(>= 128 bits, stored as a hash, one hour), and a reset that ends every session of the user.
Without AUTHSITE_SMTP_URL the mail lands in <data_dir>/outbox, which these tests read."""

import asyncio
import email
import email.policy
import hashlib
import re
from datetime import timedelta
from pathlib import Path

import httpx2
import pytest
from fastapi.testclient import TestClient
from sqlmodel import select

from authsite import accounts
from authsite.models import PasswordReset
from support import PASSWORD, FormPage, csrf_from, form_token, log_in

PUBLIC_URL = "https://auth.example.com"
ALICE_EMAIL = "alice@example.com"
NEW_PASSWORD = "new password 456"
TOKEN_ALPHABET = re.compile(r"[A-Za-z0-9_-]+")
CSRF_VALUE = re.compile(r'name="csrf_token" value="[^"]*"')


@pytest.fixture
def settings(make_settings):
    return make_settings(base_url=PUBLIC_URL)


@pytest.fixture
def alice(make_user):
    return make_user("alice", email=ALICE_EMAIL)


def another_browser(app, client) -> TestClient:
    """A second browser on the same running site: its own cookies, the app's own event loop."""
    other = TestClient(app, base_url="http://testserver", follow_redirects=False)
    other.portal = client.portal
    return other


@pytest.fixture
def stranger(app, client) -> TestClient:
    return another_browser(app, client)


@pytest.fixture
def alice_elsewhere(app, client, alice) -> TestClient:
    """alice, logged in on another device."""
    other = another_browser(app, client)
    assert log_in(other).status_code == 303
    return other


def ask_for_link(client, login: str):
    return client.post("/auth/reset", data={"login": login, "csrf_token": form_token(client, "/auth/reset")})


def outbox_files(settings) -> set[Path]:
    return set((settings.data_dir / "outbox").glob("*.eml"))


def read_mail(path: Path) -> email.message.EmailMessage:
    return email.message_from_bytes(path.read_bytes(), policy=email.policy.default)


def mails_sent_while(client, site, settings, action) -> list[email.message.EmailMessage]:
    """The mails that reach the outbox because of `action()`: those queued earlier (a new-device
    notice for a login just before, say) are delivered first, so they are not counted."""
    client.portal.call(site.mailer.wait_until_sent)
    before = outbox_files(settings)
    action()
    client.portal.call(site.mailer.wait_until_sent)
    return [read_mail(path) for path in sorted(outbox_files(settings) - before)]


def link_in(mail) -> str:
    match = re.search(re.escape(PUBLIC_URL) + r"/auth/reset/(\S+)", mail.get_body(("plain",)).get_content())
    assert match, mail.as_string()
    return match.group(1)


def mailed_token(client, site, settings, login: str = "alice") -> str:
    """Asks for a link as alice would and returns the token from the one mail that arrives."""
    mails = mails_sent_while(client, site, settings, lambda: ask_for_link(client, login))
    assert len(mails) == 1, mails
    return link_in(mails[0])


def choose_password(client, token: str, password=NEW_PASSWORD, confirm=None):
    # Any form gives this visitor's CSRF token; the link page itself may be a 400.
    data = {
        "password": password,
        "password_confirm": password if confirm is None else confirm,
        "csrf_token": form_token(client, "/auth/reset"),
    }
    return client.post(f"/auth/reset/{token}", data=data)


def reset_rows(run_db) -> list[PasswordReset]:
    return run_db(lambda db: _all_resets(db))


async def _all_resets(db) -> list[PasswordReset]:
    return list((await db.exec(select(PasswordReset))).all())


def move_links_back_in_time(run_db, by: timedelta) -> None:
    """As if `by` had passed since every pending link was mailed."""

    async def shift(db):
        for row in await _all_resets(db):
            row.created_at -= by
            row.expires_at -= by
            db.add(row)
        await db.commit()

    run_db(shift)


def is_logged_in(client) -> bool:
    return client.get("/api/me").status_code == 200


def assert_invalid_link_page(response) -> None:
    assert response.status_code == 400, response.text
    assert "invalid" in response.text
    assert 'name="password"' not in response.text


# Asking for a link


def test_the_answer_is_the_same_whether_or_not_the_account_exists(client, alice, make_user):
    make_user("bob", email=None)

    answers = {login: ask_for_link(client, login) for login in ("alice", "bob", "nobody", "nobody@example.com")}

    assert {response.status_code for response in answers.values()} == {200}
    bodies = {CSRF_VALUE.sub("", response.text) for response in answers.values()}
    assert len(bodies) == 1, bodies
    assert "Check your mail" in bodies.pop()


def test_a_user_with_an_email_gets_exactly_one_mail_with_the_link(client, site, settings, alice):
    mails = mails_sent_while(client, site, settings, lambda: ask_for_link(client, "alice"))

    assert len(mails) == 1
    mail = mails[0]
    assert mail["To"] == ALICE_EMAIL
    assert "password" in mail["Subject"].lower() and "reset" in mail["Subject"].lower()
    assert mail.get_content_type() == "multipart/alternative"
    token = link_in(mail)
    assert f"{PUBLIC_URL}/auth/reset/{token}" in mail.get_body(("plain",)).get_content()
    assert f'href="{PUBLIC_URL}/auth/reset/{token}"' in mail.get_body(("html",)).get_content()


@pytest.mark.parametrize("login", ["bob", "carol", "nobody", "nobody@example.com"])
def test_no_mail_goes_out_for_an_account_without_email_or_an_unknown_login(
    client, site, settings, alice, make_user, run_db, login
):
    make_user("bob", email=None)
    make_user("carol", email="carol@example.com", active=False)

    mails = mails_sent_while(client, site, settings, lambda: ask_for_link(client, login))

    assert mails == []
    assert reset_rows(run_db) == []


def test_the_link_token_carries_at_least_128_random_bits(client, site, settings, alice):
    token = mailed_token(client, site, settings)

    assert TOKEN_ALPHABET.fullmatch(token), token
    assert len(token) * 6 >= 128  # base64url: 6 bits a character


def test_the_reset_table_keeps_only_the_sha256_of_the_token(client, site, settings, alice, run_db):
    token = mailed_token(client, site, settings)

    [row] = reset_rows(run_db)
    assert row.token_hash == hashlib.sha256(token.encode()).hexdigest()
    assert not any(token in str(value) for value in row.model_dump().values())


def test_asking_by_email_address_also_mails_the_link(client, site, settings, alice):
    token = mailed_token(client, site, settings, login=ALICE_EMAIL)

    assert choose_password(client, token).status_code == 303


def test_an_empty_login_is_asked_for_again(client, alice):
    response = ask_for_link(client, "  ")

    assert response.status_code == 400
    assert re.search(r'name="login"[^>]*aria-invalid="true"', response.text), response.text


def test_a_reset_request_without_a_csrf_token_is_refused(client, site, settings, alice):
    client.get("/auth/reset")  # the visitor has a CSRF cookie, just no token in the form
    answers = []

    mails = mails_sent_while(
        client, site, settings, lambda: answers.append(client.post("/auth/reset", data={"login": "alice"}))
    )

    assert answers[0].status_code == 403
    assert mails == []


# Following the link


def test_the_link_page_shows_the_form_and_never_sends_its_url_as_a_referrer(client, site, settings, alice):
    token = mailed_token(client, site, settings)

    page = client.get(f"/auth/reset/{token}")

    assert page.status_code == 200
    assert 'name="password"' in page.text and 'name="password_confirm"' in page.text
    assert page.headers["referrer-policy"] == "strict-origin"


@pytest.mark.parametrize("token", ["nonsense", "A" * 43], ids=["malformed", "well-formed-but-unknown"])
def test_a_bad_link_gets_a_400_page_saying_it_is_invalid(client, alice, token):
    assert_invalid_link_page(client.get(f"/auth/reset/{token}"))
    assert_invalid_link_page(choose_password(client, token))


def test_a_new_password_without_a_csrf_token_is_refused_and_the_link_still_works(client, site, settings, alice):
    token = mailed_token(client, site, settings)
    form = {"password": NEW_PASSWORD, "password_confirm": NEW_PASSWORD}

    assert client.post(f"/auth/reset/{token}", data=form).status_code == 403
    assert choose_password(client, token).status_code == 303


def test_a_reset_sets_the_new_password(client, site, settings, alice, stranger):
    token = mailed_token(client, site, settings)

    response = choose_password(client, token)

    assert response.status_code == 303
    assert log_in(stranger, password=PASSWORD).status_code == 401
    assert log_in(stranger, password=NEW_PASSWORD).status_code == 303


def test_a_reset_ends_every_session_of_the_user(client, site, settings, alice_elsewhere):
    token = mailed_token(client, site, settings)
    assert is_logged_in(alice_elsewhere)

    assert choose_password(client, token).status_code == 303

    assert not is_logged_in(alice_elsewhere)


def test_after_a_reset_the_login_page_says_the_password_was_reset(client, site, settings, alice):
    token = mailed_token(client, site, settings)

    response = choose_password(client, token)

    assert response.headers["location"].split("?")[0] == "/auth/login"
    login_page = client.get(response.headers["location"])
    assert login_page.status_code == 200
    assert "password has been reset" in login_page.text


def test_a_link_works_only_once(client, site, settings, alice, stranger):
    token = mailed_token(client, site, settings)
    assert choose_password(client, token).status_code == 303

    assert_invalid_link_page(client.get(f"/auth/reset/{token}"))
    assert_invalid_link_page(choose_password(client, token, password="another long phrase 9"))
    assert log_in(stranger, password=NEW_PASSWORD).status_code == 303


def test_a_link_still_works_just_before_the_hour_is_up(client, site, settings, alice, run_db):
    token = mailed_token(client, site, settings)
    move_links_back_in_time(run_db, timedelta(minutes=59))

    assert client.get(f"/auth/reset/{token}").status_code == 200
    assert choose_password(client, token).status_code == 303


def test_a_link_expires_after_an_hour(client, site, settings, alice, run_db, stranger):
    token = mailed_token(client, site, settings)
    move_links_back_in_time(run_db, timedelta(hours=1, seconds=1))

    assert_invalid_link_page(client.get(f"/auth/reset/{token}"))
    assert_invalid_link_page(choose_password(client, token))
    assert log_in(stranger, password=PASSWORD).status_code == 303


def test_changing_the_password_on_the_account_page_voids_the_link(client, site, settings, alice, stranger):
    token = mailed_token(client, site, settings)
    assert log_in(stranger).status_code == 303
    change = {
        "current_password": PASSWORD,
        "new_password": "another long phrase 9",
        "new_password_confirm": "another long phrase 9",
        "csrf_token": form_token(stranger, "/account"),
    }
    assert stranger.post("/account/password", data=change).status_code == 303

    assert_invalid_link_page(choose_password(client, token))


def test_changing_the_email_on_the_account_page_voids_the_link(client, site, settings, alice, stranger):
    # The link went to the old address: whoever still reads it must not get the account.
    token = mailed_token(client, site, settings)
    assert log_in(stranger).status_code == 303
    change = {"first_name": "", "last_name": "", "email": "alice@new.example.com", "current_password": PASSWORD,
              "csrf_token": form_token(stranger, "/account")}
    mails = mails_sent_while(client, site, settings, lambda: stranger.post("/account/profile", data=change))
    [to_new] = [mail for mail in mails if mail["To"] == "alice@new.example.com"]
    link = re.search(r"/auth/verify/(\S+)", to_new.get_body(("plain",)).get_content()).group(1)
    page = stranger.get(f"/auth/verify/{link}")
    opened = stranger.post(f"/auth/verify/{link}", data={"csrf_token": csrf_from(page.text)})
    assert opened.status_code == 303  # the new address takes over

    assert_invalid_link_page(choose_password(client, token))


def test_changing_only_the_name_keeps_the_link(client, site, settings, alice, stranger):
    token = mailed_token(client, site, settings)
    assert log_in(stranger).status_code == 303
    change = {"first_name": "Alice", "last_name": "", "email": ALICE_EMAIL, "csrf_token": form_token(stranger, "/account")}
    assert stranger.post("/account/profile", data=change).status_code == 303

    assert choose_password(client, token).status_code == 303


def test_setting_the_password_another_way_voids_the_link(client, site, settings, alice, run_db):
    token = mailed_token(client, site, settings)

    async def set_password(db):
        user = await accounts.get_user_by_username(db, "alice")
        await accounts.set_password(db=db, hasher=site.hasher, user=user, password="another long phrase 9")

    run_db(set_password)

    assert_invalid_link_page(client.get(f"/auth/reset/{token}"))
    assert_invalid_link_page(choose_password(client, token))


def test_using_one_of_two_links_voids_the_other(client, site, settings, alice):
    first = mailed_token(client, site, settings)
    second = mailed_token(client, site, settings)
    assert first != second

    assert choose_password(client, second).status_code == 303

    assert_invalid_link_page(choose_password(client, first, password="another long phrase 9"))


def test_a_deactivated_users_link_stops_working(client, site, settings, alice, run_db):
    token = mailed_token(client, site, settings)

    async def deactivate(db):
        user = await accounts.get_user_by_username(db, "alice")
        await accounts.set_user_active(db=db, user=user, active=False)

    run_db(deactivate)

    assert_invalid_link_page(choose_password(client, token))


def test_a_deactivated_users_link_does_not_come_back_on_reactivation(client, site, settings, alice, run_db):
    token = mailed_token(client, site, settings)

    async def deactivate_then_reactivate(db):
        user = await accounts.get_user_by_username(db, "alice")
        await accounts.set_user_active(db=db, user=user, active=False)
        await accounts.set_user_active(db=db, user=user, active=True)

    run_db(deactivate_then_reactivate)

    assert reset_rows(run_db) == []
    assert_invalid_link_page(choose_password(client, token))


@pytest.mark.parametrize(
    ("password", "confirm", "field"),
    [
        ("password1", "password1", "password"),
        ("short", "short", "password"),
        (NEW_PASSWORD, "new password 457", "password_confirm"),
    ],
    ids=["common", "too-short", "mismatched-confirmation"],
)
def test_a_bad_new_password_is_refused_and_the_link_still_works(
    client, site, settings, alice, stranger, password, confirm, field
):
    token = mailed_token(client, site, settings)

    refused = choose_password(client, token, password=password, confirm=confirm)

    assert refused.status_code == 400
    assert re.search(rf'name="{field}"[^>]*aria-invalid="true"', refused.text), refused.text
    assert refused.headers["referrer-policy"] == "strict-origin"
    assert log_in(stranger, password=PASSWORD).status_code == 303
    assert choose_password(client, token).status_code == 303


def test_a_weak_and_mismatched_new_password_gets_both_messages_and_a_summary(client, site, settings, alice):
    token = mailed_token(client, site, settings)

    refused = choose_password(client, token, password="password1", confirm="password2")

    assert refused.status_code == 400
    assert list(FormPage(refused.text).errors()) == ["password", "password_confirm"]
    assert '<a href="#password">' in refused.text and '<a href="#password_confirm">' in refused.text
    assert choose_password(client, token).status_code == 303


def test_the_link_page_tells_a_password_manager_whose_password_it_is(client, site, settings, alice):
    token = mailed_token(client, site, settings)

    for page in (client.get(f"/auth/reset/{token}"), choose_password(client, token, password="short")):
        form = FormPage(page.text)
        username = form.inputs["username"]
        assert (username["value"], username["autocomplete"], username["type"]) == ("alice", "username", "text")
        assert "readonly" in username
        assert username["id"] in form.label_targets
        # Not shown: the person knows whose link they opened; only the password manager reads it.
        assert re.search(r'<div class="field" hidden>\s*<label for="' + username["id"], page.text)


def test_the_check_your_mail_page_leads_back_to_log_in(client, alice):
    page = ask_for_link(client, "alice")

    main = page.text[page.text.index("<main"):]
    assert "/auth/login" in FormPage(main).links  # in the page itself, not only the header


def test_one_link_used_twice_at_once_succeeds_exactly_once(app, client, site, settings, alice, stranger):
    token = mailed_token(client, site, settings)
    passwords = ["first racing phrase 1", "second racing phrase 2"]

    async def both_at_once():
        browsers = [
            httpx2.AsyncClient(transport=httpx2.ASGITransport(app=app), base_url="http://testserver")
            for _ in passwords
        ]
        try:
            forms = []
            for browser, password in zip(browsers, passwords):
                page = await browser.get(f"/auth/reset/{token}")
                assert page.status_code == 200
                forms.append({"password": password, "password_confirm": password, "csrf_token": csrf_from(page.text)})
            responses = await asyncio.gather(
                *(browser.post(f"/auth/reset/{token}", data=form) for browser, form in zip(browsers, forms))
            )
            return [response.status_code for response in responses]
        finally:
            for browser in browsers:
                await browser.aclose()

    statuses = client.portal.call(both_at_once)

    assert sorted(statuses) == [303, 400], statuses
    winner = passwords[statuses.index(303)]
    loser = passwords[statuses.index(400)]
    assert log_in(stranger, password=loser).status_code == 401
    assert log_in(stranger, password=winner).status_code == 303


# The reset-link command, for sites without mail


@pytest.fixture
def cli_environment() -> dict[str, str]:
    return {"AUTHSITE_BASE_URL": PUBLIC_URL}


def test_the_reset_link_command_prints_a_link_that_works_once(run_cli, client, make_user, stranger):
    make_user("bob", email=None)  # no email needed: the operator hands the link over

    result = run_cli("reset-link", "bob")

    assert result.returncode == 0, result.stderr
    link = result.stdout.strip()
    assert link.startswith(f"{PUBLIC_URL}/auth/reset/"), result.stdout
    token = link.removeprefix(f"{PUBLIC_URL}/auth/reset/")
    assert client.get(f"/auth/reset/{token}").status_code == 200
    assert choose_password(client, token).status_code == 303
    assert_invalid_link_page(choose_password(client, token, password="another long phrase 9"))
    assert log_in(stranger, "bob", NEW_PASSWORD).status_code == 303


def test_the_reset_link_command_refuses_an_unknown_name(run_cli, client):
    result = run_cli("reset-link", "nobody")

    assert result.returncode == 1
    assert "nobody" in result.stderr
    assert len(result.stderr.splitlines()) == 1, result.stderr
    assert "Traceback" not in result.stderr
    assert result.stdout == ""
