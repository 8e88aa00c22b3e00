"""Signing up, logging in and out, in Chromium, the way a person clicks through it."""

import re
import time

import pytest

from browsing import (
    expect, expect_logged_in_as, expect_on_login_page, fill_in_login, header, log_in, log_out, notice, path_of, session_cookie,
)
from support import PASSWORD

pytestmark = pytest.mark.sqlite_only
THIRTY_DAYS = 30 * 24 * 3600


def test_a_visitor_signs_up_and_is_logged_in_at_once(page):
    page.goto("/")
    header(page).get_by_role("link", name="Sign up").click()

    page.get_by_label("Username").fill("newcomer")
    page.get_by_label("Email (optional, for password resets)").fill("newcomer@example.com")
    page.get_by_label("Password", exact=True).fill(PASSWORD)
    page.get_by_label("Password again").fill(PASSWORD)
    page.get_by_role("button", name="Sign up").click()

    expect(page).to_have_url(re.compile(r"/$"))
    expect(page.get_by_role("main")).to_contain_text("You are logged in as newcomer")
    expect_logged_in_as(page, "newcomer")


def test_a_guarded_page_sends_a_visitor_to_log_in(page):
    page.goto("/account")

    expect_on_login_page(page, next_path="%2Faccount")
    expect(page.get_by_label("Username")).to_be_focused()


def test_logging_in_returns_to_the_page_asked_for(page, new_user):
    admin = new_user("ada", "admin")
    page.goto("/admin/events?user=grace")
    expect_on_login_page(page, next_path="%2Fadmin%2Fevents%3Fuser%3Dgrace")

    fill_in_login(page, admin)

    assert path_of(page) == "/admin/events?user=grace"
    expect(page.get_by_label("Username")).to_have_value("grace")
    expect_logged_in_as(page, admin.username)


def test_a_wrong_password_shows_one_generic_message_and_keeps_the_name(page, new_user, watch):
    watch.expect_status(401)
    user = new_user()

    log_in(page, user, password="not the password at all")

    expect(page.get_by_role("alert")).to_have_text("Wrong username or password.")
    expect(page.get_by_label("Username")).to_have_value(user.username)
    expect(page.get_by_label("Password", exact=True)).to_have_value("")
    expect(page.get_by_label("Password", exact=True)).to_be_focused()


def test_remember_me_keeps_the_cookie_for_days_and_without_it_until_the_browser_closes(new_context, new_user):
    user = new_user()
    remembered, forgotten = new_context(), new_context()

    log_in(remembered.new_page(), user, remember=True)
    log_in(forgotten.new_page(), user)

    assert session_cookie(remembered)["expires"] > time.time() + THIRTY_DAYS - 3600
    assert session_cookie(forgotten)["expires"] == -1  # a browser-session cookie
    for context in (remembered, forgotten):
        assert session_cookie(context)["httpOnly"] and session_cookie(context)["sameSite"] == "Lax"


def test_a_user_without_the_permission_gets_a_403_page_naming_it(page, new_user, watch):
    watch.expect_status(403)
    log_in(page, new_user())

    response = page.goto("/admin/users")

    assert response.status == 403
    expect(page.get_by_role("heading", name="Permission missing")).to_be_visible()
    expect(page.get_by_role("main")).to_contain_text("admin")
    expect(header(page).get_by_role("link", name="Admin")).to_have_count(0)


def test_logging_out_says_so_once_and_ends_the_session(page, new_user):
    user = new_user()
    log_in(page, user)

    log_out(page)

    assert path_of(page) == "/"
    expect(notice(page)).to_have_text("You are logged out.")
    expect(header(page).get_by_role("link", name="Log in")).to_be_visible()
    page.reload()
    expect(notice(page)).to_have_count(0)
    page.goto("/account")
    expect_on_login_page(page)
