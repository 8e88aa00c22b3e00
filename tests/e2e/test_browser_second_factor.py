"""An authenticator app in Chromium, the way a person goes through it: set it up from the security
page, log out, log in with a code, then with a recovery code, and turn it off."""

import re
import time

import pytest

from authsite.factors import totp
from browsing import expect, expect_logged_in_as, log_in, log_out, notice, set_up_authenticator, submit

pytestmark = pytest.mark.sqlite_only


def test_set_up_log_in_with_a_code_then_a_recovery_code_then_turn_it_off(page, new_user, live_site):
    user = new_user(email=True)
    log_in(page, user)
    page.goto("/account")
    page.get_by_role("link", name="Security settings").click()
    expect(page.locator("main")).to_contain_text("Off.")
    secret, codes = set_up_authenticator(page)
    expect(page.locator("figure.qr svg")).to_have_count(0)  # the setup's code is gone from this page

    with page.expect_download() as download:
        page.get_by_role("link", name="Download as text").click()
    assert all(code in download.value.path().read_text() for code in codes)
    # The login's new-device notice goes to the same address in the same second: find the mail by what it says.
    live_site.mail_matching(user.email, re.compile("An authenticator app was turned on"))

    page.get_by_role("link", name="I have saved them").click()
    expect(page.locator("main")).to_contain_text("10 unused recovery codes left")
    log_out(page)

    # The password, then the code the phone shows next (the setup used this step's).
    log_in(page, user)
    expect(page.get_by_role("heading", name="Enter your code")).to_be_visible()
    expect(page.get_by_label("Code from your app")).to_be_focused()
    page.get_by_label("Code from your app").fill(totp.code_at(secret, time.time() + 30))
    submit(page, page.get_by_role("button", name="Log in"))
    expect_logged_in_as(page, user.username)
    log_out(page)

    log_in(page, user)
    page.get_by_text("Lost your phone? Use a recovery code").click()
    page.get_by_label("Recovery code").fill(codes[0])
    submit(page, page.get_by_role("button", name="Use recovery code"))
    expect_logged_in_as(page, user.username)
    expect(notice(page)).to_contain_text("You used a recovery code")

    page.goto("/account/security")
    expect(page.locator("main")).to_contain_text("9 unused recovery codes left")
    submit(page, page.get_by_role("button", name="Turn off the authenticator app"))
    expect(notice(page)).to_have_text("The authenticator app is off.")
    log_out(page)
    log_in(page, user)
    expect_logged_in_as(page, user.username)


def test_a_wrong_code_typed_with_the_keyboard_alone_is_refused_next_to_the_field(page, new_user, watch):
    watch.expect_status(401)
    user = new_user()
    log_in(page, user)
    set_up_authenticator(page)
    page.goto("/account/security")
    log_out(page)

    log_in(page, user)
    page.keyboard.type("000000")  # the field has the focus: type, then Enter, no mouse
    with page.expect_navigation():
        page.keyboard.press("Enter")

    expect(page.locator("#code-error")).to_contain_text("That code is not right.")
    expect(page.get_by_label("Code from your app")).to_have_attribute("aria-invalid", "true")


def test_a_stale_session_confirms_its_password_before_turning_the_app_off(page, new_user, live_site):
    user = new_user()
    log_in(page, user)
    secret, _ = set_up_authenticator(page)
    live_site.age_sessions(user.username)

    page.goto("/account/security")
    submit(page, page.get_by_role("button", name="Turn off the authenticator app"))
    expect(page.get_by_role("heading", name="Confirm it is you")).to_be_visible()
    page.get_by_label("Password", exact=True).fill(user.password)
    page.get_by_label(re.compile("^Code from your app")).fill(totp.code_at(secret, time.time() + 30))
    submit(page, page.get_by_role("button", name="Confirm"))

    expect(page).to_have_url(re.compile(r"/account/security$"))
    submit(page, page.get_by_role("button", name="Turn off the authenticator app"))
    expect(notice(page)).to_contain_text("The authenticator app is off.")
