"""Proving an email address (issue 15): confirmation links, email changes that wait for the new
address and can be cancelled from the old one, AUTHSITE_EMAIL_VERIFICATION, and the
pre-hijacking story (someone signs up with another person's address; its owner takes it back by
mail). Mail lands in the outbox, which these tests read."""

import email
import email.policy
import re
from datetime import timedelta

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import update
from sqlmodel import select

from authsite.models import Authenticator, PendingStep, User
from support import confirm_email, PASSWORD, csrf_from, form_token, log_in, site_of_its_own, turn_on_totp

PUBLIC_URL = "https://auth.example.com"
ALICE_EMAIL = "alice@example.com"
NEW_EMAIL = "alice@new.example.com"
VERIFY_LINK = re.compile(re.escape(PUBLIC_URL) + r"(/auth/verify/[A-Za-z0-9_-]+)")
CANCEL_LINK = re.compile(re.escape(PUBLIC_URL) + r"(/auth/email-change/cancel/[A-Za-z0-9_-]+)")
RESET_LINK = re.compile(re.escape(PUBLIC_URL) + r"/auth/reset/([A-Za-z0-9_-]+)")
NEW_PASSWORD = "a brand new passphrase 77"


@pytest.fixture
def settings(make_settings):
    return make_settings(base_url=PUBLIC_URL)


class Outbox:
    """The mails the site has written."""

    def __init__(self, settings, client, site):
        self.folder, self.client, self.site, self.seen = settings.data_dir / "outbox", client, site, set()

    def take(self, to: str | None = None) -> list[email.message.EmailMessage]:
        """The mails (to `to`, or to anyone) not taken before, oldest first."""
        self.client.portal.call(self.site.mailer.wait_until_sent)
        taken = []
        for path in sorted(self.folder.glob("*.eml") if self.folder.exists() else []):
            if path in self.seen:
                continue
            mail = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
            if to is None or mail["To"] == to:
                self.seen.add(path)
                taken.append(mail)
        return taken

    def link(self, to: str, pattern=VERIFY_LINK) -> str:
        texts = [mail.get_body(("plain",)).get_content() for mail in self.take(to)]
        found = [match.group(1) for text in texts for match in [pattern.search(text)] if match]
        assert found, texts
        return found[-1]


@pytest.fixture
def outbox(settings, client, site) -> Outbox:
    return Outbox(settings, client, site)


def open_link(browser, link: str):
    """Open a mailed confirmation link and press its button (opening alone confirms nothing)."""
    page = browser.get(link)
    if page.status_code != 200:
        return page
    return browser.post(link, data={"csrf_token": csrf_from(page.text)})


def another_browser(app, client) -> TestClient:
    other = TestClient(app, base_url="http://testserver", follow_redirects=False)
    other.portal = client.portal
    return other


def sign_up(client, username="alice", email=ALICE_EMAIL, password=PASSWORD):
    return client.post("/auth/register", data={
        "username": username, "email": email, "password": password, "password_confirm": password,
        "csrf_token": form_token(client, "/auth/register"),
    })


def stored(run_db, username="alice") -> User:
    async def read(db):
        return (await db.exec(select(User).where(User.username == username))).one()

    return run_db(read)


def is_logged_in(client) -> bool:
    return client.get("/api/me").status_code == 200


def change_email(client, new=NEW_EMAIL):
    return client.post("/account/profile", data={
        "email": new, "current_password": PASSWORD, "csrf_token": form_token(client, "/account"),
    })


def confirmed_alice(make_user, run_db) -> User:
    """alice, whose address was proved: only then does it speak for her (the cancel link)."""
    alice = make_user("alice", email=ALICE_EMAIL)
    confirm_email(run_db, alice.id)
    return alice


def age_pending_steps(run_db, by: timedelta) -> None:
    async def age(db):
        await db.exec(update(PendingStep).values(expires_at=PendingStep.expires_at - by))
        await db.commit()

    run_db(age)


# Confirmation links


def test_signing_up_with_an_email_mails_a_link_that_confirms_it(client, run_db, outbox):
    assert sign_up(client).status_code == 303
    assert stored(run_db).email_confirmed_at is None

    response = open_link(client, outbox.link(ALICE_EMAIL))

    assert (response.status_code, response.headers["location"]) == (303, "/account")
    assert stored(run_db).email_confirmed_at is not None
    assert "confirmed" in client.get("/account").text


def test_a_link_works_once(client, outbox):
    sign_up(client)
    link = outbox.link(ALICE_EMAIL)
    assert open_link(client, link).status_code == 303

    again = open_link(client, link)

    assert again.status_code == 400
    assert "does not work" in again.text


def test_a_link_does_not_work_after_24_hours(client, run_db, outbox):
    sign_up(client)
    link = outbox.link(ALICE_EMAIL)
    age_pending_steps(run_db, timedelta(hours=24, seconds=1))

    assert client.get(link).status_code == 400
    assert stored(run_db).email_confirmed_at is None


def test_opening_a_link_never_logs_the_opening_browser_in(app, client, run_db, outbox):
    sign_up(client)
    elsewhere = another_browser(app, client)

    response = open_link(elsewhere, outbox.link(ALICE_EMAIL))

    assert response.headers["location"] == "/auth/login"
    assert not is_logged_in(elsewhere)
    assert stored(run_db).email_confirmed_at is not None


def test_merely_fetching_a_link_confirms_nothing(app, client, run_db, outbox):
    # Mail systems open the links in incoming mail to scan them: that must not prove an address.
    sign_up(client)
    scanner = another_browser(app, client)

    page = scanner.get(outbox.link(ALICE_EMAIL))

    assert page.status_code == 200 and "Confirm this address" in page.text
    assert stored(run_db).email_confirmed_at is None


def test_the_link_is_stored_only_as_a_hash(client, run_db, outbox):
    sign_up(client)
    token = outbox.link(ALICE_EMAIL).rsplit("/", 1)[1]

    async def steps(db):
        return (await db.exec(select(PendingStep))).all()

    assert all(token not in (step.token_hash, str(step.data)) for step in run_db(steps))


def test_the_account_page_offers_to_send_the_link_again_and_limits_it(client, outbox):
    sign_up(client)
    outbox.take()
    page = client.get("/account").text
    assert "unconfirmed" in page

    statuses = [client.post("/account/email/verify", data={"csrf_token": csrf_from(page)}).status_code
                for _ in range(4)]

    assert statuses == [303, 303, 303, 429]
    assert len(outbox.take(ALICE_EMAIL)) == 3


def test_every_mail_has_a_plain_and_a_simple_html_part_without_tracking(client, outbox):
    sign_up(client)

    [mail] = outbox.take(ALICE_EMAIL)

    assert mail.get_content_type() == "multipart/alternative"
    html = mail.get_body(("html",)).get_content()
    assert "authsite" in mail["Subject"] and "/auth/verify/" in html
    assert "<img" not in html and "src=" not in html


# Email changes


def test_a_new_address_takes_effect_only_when_its_link_is_opened(client, make_user, run_db, outbox):
    make_user("alice", email=ALICE_EMAIL)
    log_in(client)

    assert change_email(client).headers["location"] == "/account"
    assert stored(run_db).email == ALICE_EMAIL
    open_link(client, outbox.link(NEW_EMAIL))

    assert stored(run_db).email == NEW_EMAIL
    assert stored(run_db).email_confirmed_at is not None


def test_the_old_address_is_told_and_can_cancel_the_change(app, client, make_user, run_db, outbox):
    confirmed_alice(make_user, run_db)
    log_in(client)
    change_email(client)
    cancel = outbox.link(ALICE_EMAIL, CANCEL_LINK)
    owner = another_browser(app, client)
    page = owner.get(cancel)
    assert page.status_code == 200 and NEW_EMAIL in page.text

    response = owner.post(cancel, data={"csrf_token": csrf_from(page.text)})

    assert response.headers["location"] == "/auth/reset"
    assert not is_logged_in(client)  # every session ended
    assert open_link(client, outbox.link(NEW_EMAIL)).status_code == 400  # the change is gone
    assert stored(run_db).email == ALICE_EMAIL


def test_cancelling_after_the_change_went_through_puts_the_old_address_back(app, client, make_user, run_db, outbox):
    confirmed_alice(make_user, run_db)
    log_in(client)
    change_email(client)
    open_link(client, outbox.link(NEW_EMAIL))
    owner = another_browser(app, client)
    cancel = outbox.link(ALICE_EMAIL, CANCEL_LINK)

    page = owner.get(cancel)
    owner.post(cancel, data={"csrf_token": csrf_from(page.text)})

    assert stored(run_db).email == ALICE_EMAIL
    assert not is_logged_in(client)


def test_a_pending_change_expires(client, make_user, run_db, outbox):
    make_user("alice", email=ALICE_EMAIL)
    log_in(client)
    change_email(client)
    age_pending_steps(run_db, timedelta(hours=24, seconds=1))

    assert open_link(client, outbox.link(NEW_EMAIL)).status_code == 400
    assert stored(run_db).email == ALICE_EMAIL


def test_a_change_to_an_address_taken_meanwhile_is_refused(client, make_user, run_db, outbox):
    make_user("alice", email=ALICE_EMAIL)
    log_in(client)
    change_email(client)
    make_user("bob", email=NEW_EMAIL)

    response = open_link(client, outbox.link(NEW_EMAIL))

    assert response.status_code == 400
    assert stored(run_db).email == ALICE_EMAIL


# AUTHSITE_EMAIL_VERIFICATION


def test_mandatory_asks_for_an_email_at_sign_up(make_settings):
    with site_of_its_own(make_settings(email_verification="mandatory")) as (client, site):
        response = sign_up(client, email="")

    assert response.status_code == 400
    assert "Enter your email address" in response.text


def test_mandatory_holds_a_new_user_until_the_link_is_opened(make_settings):
    settings = make_settings(base_url=PUBLIC_URL, email_verification="mandatory")
    with site_of_its_own(settings) as (client, site):
        signed_up = sign_up(client)
        assert signed_up.status_code == 200 and "a***@example.com" in signed_up.text
        assert not is_logged_in(client)
        held = log_in(client)
        api = client.post("/api/auth/login", json={"username": "alice", "password": PASSWORD})
        open_link(client, Outbox(settings, client, site).link(ALICE_EMAIL))
        after = log_in(client)

    assert held.status_code == 403 and "not confirmed yet" in held.text
    assert api.status_code == 403 and api.json()["detail"].startswith("email not confirmed")
    assert after.status_code == 303


def test_a_held_user_can_ask_for_the_link_again(make_settings):
    settings = make_settings(base_url=PUBLIC_URL, email_verification="mandatory")
    with site_of_its_own(settings) as (client, site):
        box = Outbox(settings, client, site)
        sign_up(client)
        box.take()
        held = log_in(client)

        again = client.post("/auth/verify/resend", data={
            "csrf_token": csrf_from(held.text), "hold": re.search(r'name="hold" value="([^"]+)"', held.text).group(1),
        })

        assert again.status_code == 200
        assert len(box.take(ALICE_EMAIL)) == 1


def test_none_mails_no_link_and_changes_the_address_at_once(make_settings):
    settings = make_settings(base_url=PUBLIC_URL, email_verification="none")
    with site_of_its_own(settings) as (client, site):
        box = Outbox(settings, client, site)
        sign_up(client)
        assert box.take(ALICE_EMAIL) == []
        change_email(client)
        me = client.get("/api/me").json()

    assert me["email"] == NEW_EMAIL


def test_an_admin_can_mark_an_address_confirmed(client, make_user, run_db):
    make_user("root", scopes=("authenticated", "super"))
    alice = make_user("alice", email=ALICE_EMAIL)
    log_in(client, "root")
    page = client.get(f"/admin/users/{alice.id}").text

    response = client.post(f"/admin/users/{alice.id}/email-confirmed", data={"csrf_token": csrf_from(page)})

    assert response.status_code == 303
    assert stored(run_db).email_confirmed_at is not None


def test_create_user_with_an_email_takes_it_as_confirmed(run_cli, run_db, client):
    result = run_cli("create-user", "alice", "--email", ALICE_EMAIL, "--password-stdin", stdin=f"{PASSWORD}\n")

    assert result.returncode == 0, result.stderr
    assert stored(run_db).email_confirmed_at is not None


# Pre-hijacking: Mallory signs up with Alice's address before Alice does


def test_the_owner_of_an_address_takes_back_an_account_made_with_it(app, client, run_db, outbox, clock):
    mallory = client
    assert sign_up(mallory, username="alice2", password="mallory's own password 1").status_code == 303
    turn_on_totp(mallory, clock)  # Mallory's authenticator, to lock the owner out
    outbox.take()

    # Alice asks for a reset by her address, and the link comes to her mailbox.
    alice = another_browser(app, client)
    alice.post("/auth/reset", data={"login": ALICE_EMAIL, "csrf_token": form_token(alice, "/auth/reset")})
    token = outbox.link(ALICE_EMAIL, RESET_LINK)
    alice.post(f"/auth/reset/{token}", data={
        "password": NEW_PASSWORD, "password_confirm": NEW_PASSWORD, "csrf_token": form_token(alice, "/auth/reset"),
    })

    assert not is_logged_in(mallory)
    assert stored(run_db, "alice2").email_confirmed_at is not None

    async def authenticators(db):
        return (await db.exec(select(Authenticator))).all()

    assert run_db(authenticators) == []  # Mallory's factor is gone
    assert log_in(alice, "alice2", NEW_PASSWORD).headers["location"] == "/"  # no code asked
    assert log_in(another_browser(app, client), "alice2", "mallory's own password 1").status_code == 401


def test_a_reset_of_a_confirmed_address_keeps_the_second_factors(client, run_db, outbox, clock, app):
    sign_up(client)
    open_link(client, outbox.link(ALICE_EMAIL))
    turn_on_totp(client, clock)
    alice = another_browser(app, client)
    alice.post("/auth/reset", data={"login": ALICE_EMAIL, "csrf_token": form_token(alice, "/auth/reset")})
    token = outbox.link(ALICE_EMAIL, RESET_LINK)

    alice.post(f"/auth/reset/{token}", data={
        "password": NEW_PASSWORD, "password_confirm": NEW_PASSWORD, "csrf_token": form_token(alice, "/auth/reset"),
    })

    async def authenticators(db):
        return (await db.exec(select(Authenticator))).all()

    assert len(run_db(authenticators)) == 1
    assert log_in(alice, "alice", NEW_PASSWORD).headers["location"] == "/auth/mfa"
