"""Security notices: the owner of an account with an email address is mailed (through the outbox
here) when its password, email or second factors change, a recovery code is used, or a browser
new to the account signs in; each says what, when, from which IP and device, and what to do,
and none carries a secret. Each is an audit event too."""

import email
import email.policy
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlmodel import select

from authsite.models import AuthEvent
from support import PASSWORD, csrf_from, log_in, second_step, turn_on_totp

FIREFOX = "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0"
NEW_PASSWORD = "a brand new passphrase 42"


@pytest.fixture
def alice(make_user):
    return make_user(email="alice@example.com")


@pytest.fixture
def browser(app, client) -> TestClient:
    """Alice's browser: Firefox on Linux, logged in (so it is one she has signed in from)."""
    client.headers["user-agent"] = FIREFOX
    assert log_in(client).status_code == 303
    return client


class Outbox:
    def __init__(self, folder: Path, client, site):
        self.folder, self.client, self.site = folder, client, site
        self.seen = set(self._files())

    def _files(self):
        return sorted(self.folder.glob("*.eml")) if self.folder.exists() else []

    def new(self) -> list[email.message.EmailMessage]:
        """Mails written since the last look."""
        self.client.portal.call(self.site.mailer.wait_until_sent)
        fresh = [path for path in self._files() if path not in self.seen]
        self.seen.update(fresh)
        return [email.message_from_bytes(path.read_bytes(), policy=email.policy.default) for path in fresh]

    def one(self, subject_part: str) -> email.message.EmailMessage:
        found = [mail for mail in self.new() if subject_part in mail["Subject"]]
        assert len(found) == 1, [mail["Subject"] for mail in found]
        return found[0]


@pytest.fixture
def outbox(settings, browser, site):
    box = Outbox(settings.data_dir / "outbox", browser, site)
    box.new()  # whatever the login that made `browser` mailed
    return box


def body(mail) -> str:
    return mail.get_body(("plain",)).get_content()


def assert_says_when_where_and_what_to_do(mail):
    text = body(mail)
    assert mail["To"] == "alice@example.com"
    assert "When: " in text and " UTC" in text
    assert "From: testclient (Firefox on Linux)" in text
    assert "If it was not you," in text


def kinds(run_db) -> list[str]:
    async def read(db):
        return [event.kind for event in (await db.exec(select(AuthEvent))).all()]

    return run_db(read)


def press(client, action: str, page: str = "/account/security", **fields):
    return client.post(action, data={"csrf_token": csrf_from(client.get(page).text), **fields})


def test_a_password_change_is_noticed(alice, browser, outbox):
    response = press(browser, "/account/password", "/account", current_password=PASSWORD,
                     new_password=NEW_PASSWORD, new_password_confirm=NEW_PASSWORD)
    assert response.status_code == 303

    mail = outbox.one("password was changed")

    assert_says_when_where_and_what_to_do(mail)
    assert NEW_PASSWORD not in body(mail) and PASSWORD not in body(mail)


def test_a_password_reset_is_noticed(alice, client, settings, site):
    from authsite import resets

    async def link(db):
        return await resets.create_reset_token(db=db, user=alice)

    token = client.portal.call(_in_session, site, link)
    outbox = Outbox(settings.data_dir / "outbox", client, site)
    page = client.get(f"/auth/reset/{token}").text
    client.post(f"/auth/reset/{token}", data={"csrf_token": csrf_from(page), "password": NEW_PASSWORD,
                                              "password_confirm": NEW_PASSWORD})

    mail = outbox.one("password was reset")

    assert token not in body(mail)
    assert "If it was not you," in body(mail)


async def _in_session(site, work):
    async with site.database.sessionmaker() as db:
        return await work(db)


def test_an_email_change_is_told_to_the_old_address(alice, browser, outbox, run_db):
    from support import confirm_email

    confirm_email(run_db)  # a proved address speaks for the owner: its notice can cancel
    press(browser, "/account/profile", "/account", email="alice@elsewhere.example", current_password=PASSWORD)

    mail = outbox.one("A new email address was asked for")

    assert mail["To"] == "alice@example.com"
    assert "alice@elsewhere.example" in body(mail)
    assert "/auth/email-change/cancel/" in body(mail)


def test_turning_an_app_on_and_off_is_noticed(alice, browser, outbox, clock, run_db):
    turn_on_totp(browser, clock)
    added = outbox.one("authenticator app was added")
    press(browser, "/account/security/totp/disable")
    removed = outbox.one("was turned off")

    assert_says_when_where_and_what_to_do(added)
    assert_says_when_where_and_what_to_do(removed)
    assert {"mfa_enabled", "mfa_disabled"} <= set(kinds(run_db))


def test_new_recovery_codes_are_noticed_without_the_codes(alice, browser, outbox, clock):
    turn_on_totp(browser, clock)
    outbox.new()
    response = press(browser, "/account/security/recovery-codes")

    mail = outbox.one("New recovery codes")

    assert "recovery-code" in response.text
    assert not any(code in body(mail) for code in response.text.split('class="recovery-code">')[1:])


def test_using_a_recovery_code_is_noticed_with_how_many_are_left(alice, browser, outbox, clock, run_db):
    phone = turn_on_totp(browser, clock)
    press(browser, "/auth/logout")
    log_in(browser)
    second_step(browser, phone.recovery_codes[0])

    mail = outbox.one("recovery code of your")

    assert "9 recovery codes are left." in body(mail)
    assert phone.recovery_codes[0] not in body(mail)
    assert "recovery_code_used" in kinds(run_db)


def test_a_sign_in_from_a_new_browser_is_noticed(alice, browser, outbox, app):
    laptop = TestClient(app, base_url="http://testserver", follow_redirects=False)
    laptop.portal = browser.portal
    laptop.headers["user-agent"] = FIREFOX

    assert log_in(laptop).status_code == 303
    mail = outbox.one("New sign-in")

    assert_says_when_where_and_what_to_do(mail)


def test_a_sign_in_from_a_browser_that_signed_in_before_is_not_noticed(alice, browser, outbox):
    press(browser, "/auth/logout")

    assert log_in(browser).status_code == 303
    assert [mail["Subject"] for mail in outbox.new()] == []


def test_an_account_without_an_address_gets_no_mail(make_user, client, settings, site, clock):
    make_user("bob")
    log_in(client, "bob")
    turn_on_totp(client, clock)

    assert Outbox(settings.data_dir / "outbox", client, site).new() == []
