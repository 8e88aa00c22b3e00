"""The account: changing the password, resetting it by mail, ending other sessions; and a
form whose CSRF token was tampered with, refused."""

import re

import pytest

from browsing import (
    NEW_PASSWORD, change_password, expect, expect_logged_in_as, expect_on_login_page, fill_in_login, log_in, notice,
)

pytestmark = pytest.mark.sqlite_only
LINK = re.compile(r"^(http://\S+/auth/reset/\S+)$", re.M)


def test_changing_the_password_logs_out_the_other_browser(new_context, new_user):
    user = new_user()
    laptop, phone = new_context().new_page(), new_context().new_page()
    log_in(laptop, user)
    log_in(phone, user)

    change_password(laptop, user)

    expect(notice(laptop)).to_contain_text("Password changed.")
    expect_logged_in_as(laptop, user.username)
    phone.goto("/account")
    expect_on_login_page(phone, next_path="%2Faccount")


def test_a_forgotten_password_is_reset_through_the_mailed_link(page, new_user, live_site):
    user = new_user(email=True)
    page.goto("/auth/login")
    page.get_by_role("link", name="Forgot your password?").click()
    page.get_by_label("Username or email").fill(user.email)
    page.get_by_role("button", name="Send me a link").click()
    expect(page.get_by_role("heading", name="Check your mail")).to_be_visible()

    link = LINK.search(live_site.mail_to(user.email)).group(1)
    page.goto(link)
    page.get_by_label("New password", exact=True).fill(NEW_PASSWORD)
    page.get_by_label("New password again").fill(NEW_PASSWORD)
    page.get_by_role("button", name="Set password").click()

    expect_on_login_page(page)
    expect(notice(page)).to_have_text("Your password has been reset. Log in with the new one.")
    fill_in_login(page, user, password=NEW_PASSWORD)
    expect_logged_in_as(page, user.username)


def test_the_account_page_revokes_the_session_of_another_browser(new_context, new_user):
    user = new_user()
    laptop, phone = new_context().new_page(), new_context().new_page()
    log_in(laptop, user)
    log_in(phone, user)
    laptop.goto("/account")
    rows = laptop.locator("table.sessions tbody tr")
    expect(rows).to_have_count(2)

    rows.filter(has_not=laptop.locator(".tag", has_text="this device")).get_by_role("button", name=re.compile("^Revoke")).click()

    expect(notice(laptop)).to_have_text("That session has ended.")
    expect(rows).to_have_count(1)
    phone.goto("/account")
    expect_on_login_page(phone, next_path="%2Faccount")


def test_a_form_with_a_tampered_csrf_token_is_refused_with_a_clear_page(page, new_user, watch):
    watch.expect_status(403)
    log_in(page, new_user())
    page.goto("/account")
    profile = page.locator("form[action='/account/profile']")
    profile.get_by_label("First name").fill("Mallory")
    profile.locator("input[name=csrf_token]").evaluate("field => { field.value = 'forged.token' }")

    profile.get_by_role("button", name="Save details").click()

    expect(page.get_by_role("heading", name="Request refused")).to_be_visible()
    expect(page.get_by_role("main")).to_contain_text("Reload the page and try again")
    page.goto("/account")
    expect(page.get_by_label("First name")).to_have_value("")
