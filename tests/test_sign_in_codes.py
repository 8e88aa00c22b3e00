"""Signing in by a code mailed to the account's address (issue 15, item 5): the code and a link,
10 minutes, once, for the browser that asked; five wrong codes end it; unknown addresses get the
same answer; limits per address and per client; a second factor still asked; the JSON twin."""

import re
from datetime import timedelta

import pytest
from sqlalchemy import update
from sqlmodel import select

from authsite.models import PendingStep, User
from support import confirm_email, csrf_from, form_token, log_in, site_of_its_own, turn_on_totp
from test_email_ownership import ALICE_EMAIL, Outbox, PUBLIC_URL, another_browser, is_logged_in
from test_enumeration import seen_by_client

CODE = re.compile(r"^\s+(\d{6})$", re.MULTILINE)
LINK = re.compile(re.escape(PUBLIC_URL) + r"(/auth/code/[A-Za-z0-9_-]{20,})")


@pytest.fixture
def settings(make_settings):
    return make_settings(base_url=PUBLIC_URL)


@pytest.fixture
def alice(make_user, run_db):
    """alice, whose address is proved (a first proof by code is tests/test_email_attacks.py's story)."""
    user = make_user("alice", email=ALICE_EMAIL)
    confirm_email(run_db, user.id)
    return user


@pytest.fixture
def outbox(settings, client, site) -> Outbox:
    return Outbox(settings, client, site)


def ask_for_code(client, email=ALICE_EMAIL, **fields):
    return client.post("/auth/code", data={"email": email, "csrf_token": form_token(client, "/auth/code"), **fields})


def mailed(outbox) -> tuple[str, str]:
    [mail] = outbox.take(ALICE_EMAIL)
    text = mail.get_body(("plain",)).get_content()
    return CODE.search(text).group(1), LINK.search(text).group(1)


def type_code(client, code: str, next_path="/"):
    page = client.get("/auth/code/confirm")
    token = csrf_from(page.text) if page.status_code == 200 else form_token(client, "/auth/code")
    return client.post("/auth/code/confirm", data={"code": code, "next": next_path, "csrf_token": token})


def wrong(code: str) -> str:
    return f"{(int(code) + 1) % 1_000_000:06d}"


def test_the_login_page_offers_a_sign_in_code(client):
    assert 'href="/auth/code">Email me a sign-in code</a>' in client.get("/auth/login").text


def test_the_mailed_code_signs_in_and_goes_to_next(client, alice, outbox):
    assert ask_for_code(client, next="/account").headers["location"] == "/auth/code/confirm?next=/account"
    code, _ = mailed(outbox)

    response = type_code(client, code, next_path="/account")

    assert (response.status_code, response.headers["location"]) == (303, "/account")
    assert is_logged_in(client)


def test_a_code_proves_the_address(client, make_user, outbox, run_db):
    make_user("alice", email=ALICE_EMAIL)
    ask_for_code(client)
    type_code(client, mailed(outbox)[0])

    async def read(db):
        return (await db.exec(select(User))).one()

    assert run_db(read).email_confirmed_at is not None


def test_a_wrong_code_is_refused_with_401(client, alice, outbox):
    ask_for_code(client)
    code, _ = mailed(outbox)

    response = type_code(client, wrong(code))

    assert response.status_code == 401
    assert "That code is not right" in response.text
    assert not is_logged_in(client)


def test_five_wrong_codes_end_it(client, alice, outbox):
    ask_for_code(client)
    code, _ = mailed(outbox)
    answers = [type_code(client, wrong(code)).status_code for _ in range(5)]

    assert answers == [401, 401, 401, 401, 303]
    assert type_code(client, code).headers["location"] == "/auth/code"
    assert not is_logged_in(client)


def test_a_code_works_once(app, client, alice, outbox):
    ask_for_code(client)
    code, _ = mailed(outbox)
    assert type_code(client, code).status_code == 303
    client.post("/api/auth/logout")

    assert type_code(client, code).headers["location"] == "/auth/code"


def test_a_code_expires_after_ten_minutes(client, alice, outbox, run_db):
    ask_for_code(client)
    code, _ = mailed(outbox)

    async def age(db):
        await db.exec(update(PendingStep).values(expires_at=PendingStep.expires_at - timedelta(minutes=10, seconds=1)))
        await db.commit()

    run_db(age)

    assert type_code(client, code).headers["location"] == "/auth/code"
    assert not is_logged_in(client)


def test_the_code_works_only_in_the_browser_that_asked(app, client, alice, outbox):
    ask_for_code(client)
    code, _ = mailed(outbox)
    thief = another_browser(app, client)

    response = type_code(thief, code)

    assert response.headers["location"] == "/auth/code"
    assert not is_logged_in(thief)


def test_an_unknown_address_gets_the_same_answer_and_no_mail(app, client, alice, outbox):
    known = ask_for_code(another_browser(app, client), ALICE_EMAIL)
    unknown = ask_for_code(another_browser(app, client), "nobody@example.com")

    assert seen_by_client(known) == seen_by_client(unknown)
    assert len(outbox.take()) == 1


def test_codes_are_limited_per_address(client, alice, outbox):
    statuses = [ask_for_code(client).status_code for _ in range(4)]

    assert statuses == [303, 303, 303, 429]
    assert len(outbox.take(ALICE_EMAIL)) == 3


def test_codes_are_limited_per_client(make_settings):
    with site_of_its_own(make_settings(reset_max_per_ip=2)) as (client, site):
        statuses = [ask_for_code(client, f"someone{i}@example.com").status_code for i in range(3)]

    assert statuses == [303, 303, 429]


def test_an_account_with_a_second_factor_goes_on_to_it(client, alice, outbox, clock, app):
    log_in(client)
    turn_on_totp(client, clock)
    browser = another_browser(app, client)
    outbox.take()
    ask_for_code(browser)
    code, _ = mailed(outbox)

    response = type_code(browser, code)

    assert response.headers["location"] == "/auth/mfa"
    assert not is_logged_in(browser)


def test_the_link_signs_in_the_browser_that_asked(client, alice, outbox):
    ask_for_code(client)
    _, link = mailed(outbox)

    response = client.get(link)

    assert response.status_code == 303
    assert is_logged_in(client)


def test_the_link_opened_elsewhere_asks_first(app, client, alice, outbox):
    ask_for_code(client)
    _, link = mailed(outbox)
    phone = another_browser(app, client)

    page = phone.get(link)
    assert page.status_code == 200 and "Sign in on this browser?" in page.text
    assert not is_logged_in(phone)
    response = phone.post(link, data={"csrf_token": csrf_from(page.text)})

    assert response.status_code == 303
    assert is_logged_in(phone)
    assert type_code(client, "000000").headers["location"] == "/auth/code"  # the code went with the link


def test_the_api_twin_signs_in(client, alice, outbox):
    asked = client.post("/api/auth/code", json={"email": ALICE_EMAIL})
    code, _ = mailed(outbox)

    response = client.post("/api/auth/code/confirm", json={"code": code})

    assert asked.status_code == 202
    assert response.status_code == 200 and response.json()["user"]["username"] == "alice"


def test_the_api_twin_answers_401_then_429(client, alice, outbox):
    client.post("/api/auth/code", json={"email": ALICE_EMAIL})
    code, _ = mailed(outbox)

    statuses = [client.post("/api/auth/code/confirm", json={"code": wrong(code)}).status_code for _ in range(5)]

    assert statuses == [401, 401, 401, 401, 429]


def test_sign_in_codes_can_be_turned_off(make_settings):
    with site_of_its_own(make_settings(login_by_code=False)) as (client, site):
        assert client.get("/auth/code").status_code == 404
        assert "sign-in code" not in client.get("/auth/login").text
        assert client.post("/api/auth/code", json={"email": ALICE_EMAIL}).status_code == 404


def test_the_check_your_mail_page_leads_back_to_log_in(client, alice):
    asked = ask_for_code(client, next="/account")
    page = client.get(asked.headers["location"]) if asked.is_redirect else asked

    main = page.text[page.text.index("<main"):]
    assert 'href="/auth/login?next=/account">Back to log in</a>' in main
