"""An attacker's view of email ownership and sign-in codes (issue 15): pre-hijacking through a
sign-in code, pending email changes and sign-in codes that outlive the owner's answer, the per-address
code limit dodged with other spellings of one address, and hostile input on every new route.
Also: the cancel link dodged (a chain of changes, removing the address first), factors added while
the mail was elsewhere surviving "this was not me", an unconfirmed old address taking the account
back, and a mail scanner's visit confirming an address."""

import re

import pytest
from sqlmodel import select

from authsite.models import Authenticator
from support import confirm_email, PASSWORD, csrf_from, form_token, log_in, turn_on_totp
from test_email_ownership import (
    ALICE_EMAIL, CANCEL_LINK, NEW_PASSWORD, PUBLIC_URL, RESET_LINK, Outbox, another_browser, change_email,
    is_logged_in, open_link, sign_up, stored,
)
from test_enumeration import seen_by_client
from test_sign_in_codes import ask_for_code, mailed, type_code

MALLORY_PASSWORD = "mallory's own password 1"
EVIL_EMAIL = "mallory@evil.example.net"
EVIL_EMAIL_2 = "mallory2@evil.example.net"


@pytest.fixture
def settings(make_settings):
    return make_settings(base_url=PUBLIC_URL)


@pytest.fixture
def outbox(settings, client, site) -> Outbox:
    return Outbox(settings, client, site)


def reset_by_mail(browser, outbox, login=ALICE_EMAIL, password=NEW_PASSWORD):
    browser.post("/auth/reset", data={"login": login, "csrf_token": form_token(browser, "/auth/reset")})
    token = outbox.link(ALICE_EMAIL, RESET_LINK)
    response = browser.post(f"/auth/reset/{token}", data={
        "password": password, "password_confirm": password, "csrf_token": form_token(browser, "/auth/reset"),
    })
    assert response.headers["location"] == "/auth/login", response.text


def change_and_open(client, outbox, new: str, *, password=PASSWORD):
    """Ask for `new` on the profile form and open the link mailed there (in `client`)."""
    response = client.post("/account/profile", data={
        "email": new, "current_password": password, "csrf_token": form_token(client, "/account"),
    })
    assert response.status_code == 303, response.text
    assert open_link(client, outbox.link(new)).status_code == 303


# Pre-hijacking through a sign-in code: Mallory signs up with Alice's address; Alice, thinking she
# may have an account, asks the login page for a code and signs in with it. The docs
# (docs/security.md, deviation 6) promise that this, like a reset link, takes the account from
# Mallory: every session ends and the second factors set up before go. Nothing replaces the
# password here, so it must stop working too, or Mallory simply logs in again.


def mallory_signs_up_with_alices_address(client, outbox):
    assert sign_up(client, username="alice2", password=MALLORY_PASSWORD).status_code == 303
    outbox.take()


def test_a_sign_in_code_takes_an_account_from_whoever_made_it_with_the_address(app, client, run_db, outbox):
    mallory = client
    mallory_signs_up_with_alices_address(mallory, outbox)

    alice = another_browser(app, client)
    ask_for_code(alice)
    code, _ = mailed(outbox)
    assert type_code(alice, code).status_code == 303 and is_logged_in(alice)

    assert stored(run_db, "alice2").email_confirmed_at is not None
    assert not is_logged_in(mallory)  # Mallory's session ended
    # ... and Mallory's password no longer opens the account Alice now uses.
    assert log_in(another_browser(app, client), "alice2", MALLORY_PASSWORD).status_code == 401
    assert log_in(another_browser(app, client), ALICE_EMAIL, MALLORY_PASSWORD).status_code == 401


def test_a_sign_in_code_removes_second_factors_set_up_before_the_address_was_proved(app, client, run_db, outbox,
                                                                                     clock):
    mallory = client
    mallory_signs_up_with_alices_address(mallory, outbox)
    turn_on_totp(mallory, clock)  # to lock the owner out (or to keep a way in)
    outbox.take()

    alice = another_browser(app, client)
    ask_for_code(alice)
    code, _ = mailed(outbox)
    response = type_code(alice, code)

    async def authenticators(db):
        return (await db.exec(select(Authenticator))).all()

    assert run_db(authenticators) == []
    assert response.headers["location"] == "/account"  # signed in (told what went): no code from Mallory's app asked
    assert is_logged_in(alice)


def test_a_sign_in_code_ends_mallorys_pending_email_change(app, client, run_db, outbox):
    mallory = client
    mallory_signs_up_with_alices_address(mallory, outbox)
    mallory.post("/account/profile", data={
        "email": EVIL_EMAIL, "current_password": MALLORY_PASSWORD, "csrf_token": form_token(mallory, "/account"),
    })
    evil_link = outbox.link(EVIL_EMAIL)
    outbox.take()

    alice = another_browser(app, client)
    ask_for_code(alice)
    code, _ = mailed(outbox)
    type_code(alice, code)

    # Mallory waits until Alice has settled in, then moves the account's mail to herself.
    another_browser(app, client).get(evil_link)
    assert stored(run_db, "alice2").email == ALICE_EMAIL


def test_a_code_for_a_proved_address_keeps_the_password_and_the_second_factors(app, client, make_user, run_db,
                                                                                outbox, clock):
    confirmed_alice(make_user, run_db)
    log_in(client)
    turn_on_totp(client, clock)
    outbox.take()
    browser = another_browser(app, client)
    ask_for_code(browser)
    code, _ = mailed(outbox)

    assert type_code(browser, code).headers["location"] == "/auth/mfa"  # the owner's own app still asked
    assert is_logged_in(client)
    assert log_in(another_browser(app, client)).headers["location"] == "/auth/mfa"  # the password still works


def test_a_taken_back_account_refuses_the_old_password_like_any_wrong_one(app, client, run_db, outbox):
    mallory_signs_up_with_alices_address(client, outbox)
    alice = another_browser(app, client)
    ask_for_code(alice)
    type_code(alice, mailed(outbox)[0])

    taken_back = log_in(another_browser(app, client), "alice2", MALLORY_PASSWORD)
    wrong_password = log_in(another_browser(app, client), "alice2", "not the password at all 9")
    assert seen_by_client(taken_back) == seen_by_client(wrong_password)


def test_a_mail_scanner_fetching_the_verify_link_does_not_confirm_mallorys_account(app, client, run_db, outbox):
    # Mallory signs up with Alice's address; the link goes to Alice's mailbox, whose provider
    # fetches every link in incoming mail (Safe Links and the like). A plain GET must not prove
    # the address: once "confirmed", Alice's reset or code no longer takes the account back.
    assert sign_up(client, username="alice2", password=MALLORY_PASSWORD).status_code == 303
    scanner = another_browser(app, client)
    scanner.get(outbox.link(ALICE_EMAIL))

    assert stored(run_db, "alice2").email_confirmed_at is None


# A pending change must not outlive the owner's answer to it


def confirmed_alice(make_user, run_db):
    """Alice, whose address is proved (so a reset is no pre-hijacking take-back)."""
    alice = make_user("alice", email=ALICE_EMAIL)
    confirm_email(run_db, alice.id)
    return alice


def test_a_pending_change_does_not_survive_the_owners_password_reset(app, client, make_user, run_db, outbox):
    confirmed_alice(make_user, run_db)
    mallory = client  # has Alice's password, and a session
    log_in(mallory)
    change_email(mallory, EVIL_EMAIL)
    evil_link = outbox.link(EVIL_EMAIL)

    # Alice gets the notice and does what any owner does first: she resets her password.
    alice = another_browser(app, client)
    reset_by_mail(alice, outbox)
    assert not is_logged_in(mallory)

    # The change link Mallory holds still moves the account's mail (and so its resets) to her.
    another_browser(app, client).get(evil_link)
    assert stored(run_db).email == ALICE_EMAIL


def test_a_pending_change_does_not_survive_a_password_change(app, client, make_user, run_db, outbox):
    confirmed_alice(make_user, run_db)
    mallory = another_browser(app, client)
    log_in(mallory)
    change_email(mallory, EVIL_EMAIL)
    evil_link = outbox.link(EVIL_EMAIL)

    log_in(client)
    response = client.post("/account/password", data={
        "current_password": PASSWORD, "new_password": NEW_PASSWORD, "new_password_confirm": NEW_PASSWORD,
        "csrf_token": form_token(client, "/account"),
    })
    assert response.status_code == 303
    assert not is_logged_in(mallory)

    another_browser(app, client).get(evil_link)
    assert stored(run_db).email == ALICE_EMAIL


# "This was not me" must undo a chain of changes, not only the first


def test_cancelling_undoes_a_chain_of_changes(app, client, make_user, run_db, outbox):
    confirmed_alice(make_user, run_db)
    mallory = client  # has Alice's password and a session
    log_in(mallory)
    change_and_open(mallory, outbox, EVIL_EMAIL)
    cancel = outbox.link(ALICE_EMAIL, CANCEL_LINK)  # the notice went to Alice
    # Mallory moves on once more, at once: the cancel link Alice holds names EVIL_EMAIL as "new".
    change_and_open(mallory, outbox, EVIL_EMAIL_2)
    assert stored(run_db).email == EVIL_EMAIL_2

    alice = another_browser(app, client)
    page = alice.get(cancel)
    alice.post(cancel, data={"csrf_token": csrf_from(page.text)})

    assert stored(run_db).email == ALICE_EMAIL


def test_a_sign_in_code_mailed_to_the_address_left_dies_with_the_move(app, client, make_user, run_db, outbox):
    confirmed_alice(make_user, run_db)
    mallory = client
    log_in(mallory)
    change_and_open(mallory, outbox, EVIL_EMAIL)
    cancel = outbox.link(ALICE_EMAIL, CANCEL_LINK)
    # Mallory asks for a code to "her" address before Alice reads her mail ...
    thief = another_browser(app, client)
    ask_for_code(thief, EVIL_EMAIL)
    [mail] = outbox.take(EVIL_EMAIL)
    code = re.search(r"^\s+(\d{6})$", mail.get_body(("plain",)).get_content(), re.M).group(1)

    # ... Alice cancels: her address is back, every session ends ...
    alice = another_browser(app, client)
    alice.post(cancel, data={"csrf_token": csrf_from(alice.get(cancel).text)})
    assert stored(run_db).email == ALICE_EMAIL

    # ... and the code that went to Mallory's mailbox must not sign her in again.
    type_code(thief, code)
    assert not is_logged_in(thief)


def test_removing_the_address_first_does_not_dodge_the_cancel_link(app, client, make_user, run_db, outbox):
    confirmed_alice(make_user, run_db)
    mallory = client  # has Alice's password and a session
    log_in(mallory)
    # Under `optional`, removing the address takes effect at once; the next one then has no old
    # address to tell, so no cancel link goes anywhere.
    response = mallory.post("/account/profile", data={
        "email": "", "current_password": PASSWORD, "csrf_token": form_token(mallory, "/account"),
    })
    assert response.status_code == 303
    change_and_open(mallory, outbox, EVIL_EMAIL)
    assert stored(run_db).email == EVIL_EMAIL

    cancel = outbox.link(ALICE_EMAIL, CANCEL_LINK)
    alice = another_browser(app, client)
    alice.post(cancel, data={"csrf_token": csrf_from(alice.get(cancel).text)})
    assert stored(run_db).email == ALICE_EMAIL


def test_cancelling_removes_a_passkey_added_while_the_mail_was_elsewhere(app, client, make_user, run_db, outbox):
    from soft_passkey import SoftPasskey
    from test_passkeys import add_passkey, sign_in

    confirmed_alice(make_user, run_db)
    mallory = client  # has Alice's password and a session
    log_in(mallory)
    change_and_open(mallory, outbox, EVIL_EMAIL)
    cancel = outbox.link(ALICE_EMAIL, CANCEL_LINK)
    # Now the account's notices go to Mallory: Alice never hears of this passkey.
    device = SoftPasskey(origin=PUBLIC_URL)
    assert add_passkey(mallory, device).status_code == 200
    assert not outbox.take(ALICE_EMAIL)

    alice = another_browser(app, client)
    alice.post(cancel, data={"csrf_token": csrf_from(alice.get(cancel).text)})
    reset_by_mail(alice, outbox)  # and she resets her password, as the cancel page says
    assert stored(run_db).email == ALICE_EMAIL

    later = another_browser(app, client)
    sign_in(later, device)
    assert not is_logged_in(later)


# The old address is trusted to cancel only because it was proved


def test_an_unconfirmed_old_address_cannot_take_the_account_back(app, client, run_db, outbox):
    typo = "alice@exmaple.com"  # a typo-squatter's domain; Alice's first address never proved
    sign_up(client, email=typo)
    outbox.take()
    change_and_open(client, outbox, ALICE_EMAIL)
    assert stored(run_db).email == ALICE_EMAIL
    squatter = another_browser(app, client)
    cancels = [mail for mail in outbox.take(typo)
               if CANCEL_LINK.search(mail.get_body(("plain",)).get_content())]

    if cancels:
        cancel = CANCEL_LINK.search(cancels[-1].get_body(("plain",)).get_content()).group(1)
        page = squatter.get(cancel)
        if page.status_code == 200:
            squatter.post(cancel, data={"csrf_token": csrf_from(page.text)})

    assert stored(run_db).email == ALICE_EMAIL
    assert is_logged_in(client)


# The per-address limit on codes: one address, however it is typed


@pytest.mark.parametrize("spelling", [
    "alice@ｅｘａｍｐｌｅ.com",  # fullwidth letters: IDNA maps them to example.com
    "alice@example。com",  # an ideographic full stop: a dot to IDNA
    "alice@ＥＸＡＭＰＬＥ.ＣＯＭ",
])
def test_the_code_limit_per_address_holds_for_every_spelling_of_it(app, client, make_user, outbox, spelling):
    make_user("alice", email=ALICE_EMAIL)
    statuses = [ask_for_code(another_browser(app, client)).status_code for _ in range(3)]
    statuses.append(ask_for_code(another_browser(app, client), spelling).status_code)

    assert statuses == [303, 303, 303, 429]
    assert len(outbox.take(ALICE_EMAIL)) == 3


# Enumeration: the code form must not tell which addresses have an account


# Hostile input on the new routes: never a 500


HOSTILE = ["\x00", "a\x00b", "%00", "\ud800", "x" * 5000, "😀" * 300, "..", "a/b", "\u202e", " ", "\r\nX: y"]


@pytest.mark.parametrize("value", HOSTILE)
def test_hostile_tokens_in_paths_are_refused_quietly(client, value):
    from urllib.parse import quote

    path = quote(value.encode("utf-8", "surrogatepass"), safe="")
    for url in (f"/auth/verify/{path}", f"/auth/email-change/cancel/{path}", f"/auth/code/{path}"):
        assert client.get(url).status_code < 500, url
    token = form_token(client, "/auth/code")
    for url in (f"/auth/email-change/cancel/{path}", f"/auth/code/{path}"):
        assert client.post(url, data={"csrf_token": token}).status_code < 500, url


@pytest.mark.parametrize("value", HOSTILE + ["a@b\x00", "a\x00@b.com", "\ud800@example.com", "a@" + "b" * 300])
def test_hostile_addresses_and_codes_are_refused_quietly(app, client, outbox, value):
    browser = another_browser(app, client)
    token = form_token(browser, "/auth/code")
    raw = value.encode("utf-8", "surrogatepass")
    from urllib.parse import quote_from_bytes

    body = f"email={quote_from_bytes(raw)}&csrf_token={token}"
    headers = {"content-type": "application/x-www-form-urlencoded"}
    assert browser.post("/auth/code", content=body, headers=headers).status_code < 500
    assert browser.post("/auth/code/confirm", content=f"code={quote_from_bytes(raw)}&csrf_token={token}",
                        headers=headers).status_code < 500
    json_body = b'{"email": "' + raw.replace(b"\x00", b"\\u0000").replace(b"\xed\xa0\x80", b"\\ud800") + b'"}'
    assert browser.post("/api/auth/code", content=json_body,
                        headers={"content-type": "application/json"}).status_code < 500
    assert browser.post("/api/auth/code/confirm", content=json_body.replace(b"email", b"code"),
                        headers={"content-type": "application/json"}).status_code < 500
    assert browser.post("/auth/verify/resend", content=f"hold={quote_from_bytes(raw)}&csrf_token={token}",
                        headers=headers).status_code < 500
    outbox.take()


def test_a_hostile_hold_is_refused_quietly(client):
    token = form_token(client, "/auth/login")
    for hold in ("", "x", "a" * 10000, "\x00", "v1.AAAA.BBBB"):
        assert client.post("/auth/verify/resend", data={"hold": hold, "csrf_token": token}).status_code == 303
