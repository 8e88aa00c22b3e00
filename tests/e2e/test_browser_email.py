"""Email in Chromium, the way a person goes through it: confirming the address given at sign-up, moving
the account to a new address (and the old address cancelling that), signing in with a code or a
link from the mail; the new pages labelled, fitting the screen, and photographed.

Like test_browser_screenshots.py, `REFRESH_DOCS_SCREENSHOTS=1 pytest tests/e2e -k screenshot` also
rewrites two README pictures: docs/screenshots/sign-in-code-desktop.png and email-unconfirmed-desktop.png
(`pytest tests/e2e/test_browser_email.py -k screenshot` for these two alone)."""

import itertools
import os
import re

import pytest

from browsing import (
    account_link, expect, expect_logged_in_as, expect_on_login_page, fill_in_login, log_in, notice, path_of, submit,
)
from e2e_common import DESKTOP, PHONE
from support import PASSWORD
from test_browser_accessibility import INVALID_FIELDS, controls_on
from test_browser_screenshots import DOCS_SCREENSHOTS, SIDEWAYS_OVERFLOW

pytestmark = pytest.mark.sqlite_only
VERIFY_LINK = re.compile(r"^(http://\S+/auth/verify/[A-Za-z0-9_-]+)$", re.M)
CANCEL_LINK = re.compile(r"(http://\S+/auth/email-change/cancel/[A-Za-z0-9_-]+)")
CODE = re.compile(r"^\s+(\d{6})$", re.M)
CODE_LINK = re.compile(r"^(http://\S+/auth/code/[A-Za-z0-9_-]{20,})$", re.M)
CONFIRMED = "Your email address is confirmed. Thank you."
WRONG_CODE = "That code is not right. Type the code from the mail we just sent."
_newcomers = itertools.count(1)


def sign_up(page, username: str, email: str) -> None:
    page.goto("/auth/register")
    page.get_by_label("Username").fill(username)
    page.get_by_label("Email (optional, for password resets)").fill(email)
    page.get_by_label("Password", exact=True).fill(PASSWORD)
    page.get_by_label("Password again").fill(PASSWORD)
    submit(page, page.get_by_role("button", name="Sign up"))
    expect_logged_in_as(page, username)


def open_link(page, link: str, button: str) -> None:
    """Open a mailed link, then press its page's button: opening alone confirms nothing."""
    page.goto(link)
    submit(page, page.get_by_role("button", name=button))


def a_newcomer() -> tuple[str, str]:
    username = f"newcomer{next(_newcomers)}"
    return username, f"{username}@example.com"


def email_details(page):
    """The account page's Email entry: the address, its tag, and any change waiting."""
    return page.locator("xpath=//dl[contains(@class, 'details')]/dt[.='Email']/following-sibling::dd[1]")


def ask_for_a_code(page, email: str) -> None:
    """From the login page to "Check your mail", the way a person gets there."""
    page.goto("/auth/login")
    page.get_by_role("link", name="Email me a sign-in code").click()
    expect(page.get_by_role("heading", name="Sign in with a code")).to_be_visible()
    page.get_by_label("Email", exact=True).fill(email)
    submit(page, page.get_by_role("button", name="Email me a code"))
    expect(page.get_by_role("heading", name="Check your mail")).to_be_visible()
    expect(page.locator("main")).to_contain_text("If an account has that address, we sent it a 6-digit code.")


def change_email(page, user, new_email: str) -> None:
    page.goto("/account")
    profile = page.locator("form[action='/account/profile']")
    profile.get_by_label("Email", exact=True).fill(new_email)
    profile.get_by_label("Current password").fill(user.password)
    submit(page, profile.get_by_role("button", name="Save details"))


# Confirming the address given at sign-up


def test_the_address_given_at_sign_up_is_confirmed_by_the_mailed_link(page, live_site):
    username, email = a_newcomer()
    sign_up(page, username, email)
    page.goto("/account")
    expect(email_details(page)).to_contain_text(email)
    expect(email_details(page).locator(".tag")).to_have_text("unconfirmed")
    expect(email_details(page).get_by_role("button", name="Send the confirmation link again")).to_be_visible()

    open_link(page, live_site.mail_matching(email, VERIFY_LINK).group(1), "Confirm this address")

    expect(page).to_have_url(re.compile(r"/account$"))
    expect(notice(page)).to_have_text(CONFIRMED)
    expect(email_details(page).locator(".tag")).to_have_text("confirmed")
    expect(email_details(page).get_by_role("button", name="Send the confirmation link again")).to_have_count(0)


def test_the_link_opened_in_another_browser_confirms_without_logging_it_in(new_context, live_site):
    username, email = a_newcomer()
    laptop, phone = new_context().new_page(), new_context().new_page()
    sign_up(laptop, username, email)

    open_link(phone, live_site.mail_matching(email, VERIFY_LINK).group(1), "Confirm this address")

    expect_on_login_page(phone)
    expect(notice(phone)).to_have_text(CONFIRMED)
    expect(account_link(phone, username)).to_have_count(0)
    phone.goto("/account")
    expect_on_login_page(phone, next_path="%2Faccount")
    laptop.goto("/account")
    expect(email_details(laptop).locator(".tag")).to_have_text("confirmed")


# Moving the account to a new address


def test_a_new_address_takes_over_only_once_its_link_is_opened(page, new_user, live_site):
    user = new_user(email=True)
    new_email = f"{user.username}@new.example.org"
    log_in(page, user)

    change_email(page, user, new_email)

    expect(page).to_have_url(re.compile(r"/account$"))
    expect(notice(page)).to_have_text(
        "We sent a link to the new address: your email changes when you open it (within 24 hours).")
    expect(email_details(page)).to_contain_text(user.email)
    expect(email_details(page).locator(".tag")).to_have_text("confirmed")
    expect(email_details(page)).to_contain_text(f"Changing to {new_email}")
    told = live_site.mail_matching(user.email, CANCEL_LINK).string
    assert f"asked to move its email to {new_email}" in told

    open_link(page, live_site.mail_matching(new_email, VERIFY_LINK).group(1), "Use this address")

    expect(page).to_have_url(re.compile(r"/account$"))
    expect(notice(page)).to_have_text("Your new email address is confirmed and in use.")
    expect(email_details(page)).to_contain_text(new_email)
    expect(email_details(page)).not_to_contain_text(user.email)
    expect(email_details(page)).not_to_contain_text("Changing to")
    expect(email_details(page).locator(".tag")).to_have_text("confirmed")


def test_the_old_address_cancels_the_change_and_logs_out_everywhere(new_context, new_user, live_site, watch):
    watch.expect_status(400)  # the new address's link, dead once the change is cancelled
    watch.expect_status(401)  # the old password, turned off: whoever asked for the change knew it
    user = new_user(email=True)
    new_email = f"{user.username}@new.example.org"
    intruder, owner = new_context().new_page(), new_context().new_page()
    log_in(intruder, user)
    change_email(intruder, user, new_email)
    expect(notice(intruder)).to_contain_text("We sent a link to the new address")

    owner.goto(live_site.mail_matching(user.email, CANCEL_LINK).group(1))
    expect(owner.get_by_role("heading", name="Cancel the email change")).to_be_visible()
    expect(owner.get_by_role("main")).to_contain_text(new_email)
    submit(owner, owner.get_by_role("button", name="Cancel the change and log out everywhere"))

    expect(owner).to_have_url(re.compile(r"/auth/reset$"))
    expect(notice(owner)).to_contain_text("the change is undone, every device is logged out")
    intruder.goto("/account")
    expect_on_login_page(intruder, next_path="%2Faccount")
    intruder.goto(live_site.mail_matching(new_email, VERIFY_LINK).group(1))
    expect(intruder.get_by_role("heading", name="Confirmation link not valid")).to_be_visible()
    intruder.goto("/auth/login")
    fill_in_login(intruder, user)
    expect(intruder.get_by_role("alert")).to_have_text("Wrong username or password.")


# Signing in with a code or a link from the mail


def test_the_mailed_code_typed_on_the_page_signs_in(page, new_user, live_site):
    user = new_user(email=True)
    ask_for_a_code(page, user.email)
    expect(page.get_by_label("Code from the mail")).to_be_focused()

    page.get_by_label("Code from the mail").fill(live_site.mail_matching(user.email, CODE).group(1))
    submit(page, page.get_by_role("button", name="Sign in"))

    assert path_of(page) == "/"
    expect_logged_in_as(page, user.username)


def test_the_mailed_link_opened_in_the_same_browser_signs_in(page, new_user, live_site):
    user = new_user(email=True)
    ask_for_a_code(page, user.email)

    page.goto(live_site.mail_matching(user.email, CODE_LINK).group(1))

    assert path_of(page) == "/"
    expect_logged_in_as(page, user.username)


def test_the_mailed_link_opened_elsewhere_asks_before_signing_in(new_context, new_user, live_site):
    user = new_user(email=True)
    laptop, phone = new_context().new_page(), new_context().new_page()
    ask_for_a_code(laptop, user.email)

    phone.goto(live_site.mail_matching(user.email, CODE_LINK).group(1))

    expect(phone.get_by_role("heading", name="Sign in on this browser?")).to_be_visible()
    expect(account_link(phone, user.username)).to_have_count(0)
    submit(phone, phone.get_by_role("button", name="Sign in here"))
    expect_logged_in_as(phone, user.username)


def test_a_wrong_code_is_refused_next_to_the_field_and_the_right_one_still_works(page, new_user, live_site, watch):
    watch.expect_status(401)
    user = new_user(email=True)
    ask_for_a_code(page, user.email)
    code = live_site.mail_matching(user.email, CODE).group(1)

    page.get_by_label("Code from the mail").fill(f"{(int(code) + 1) % 1_000_000:06d}")
    submit(page, page.get_by_role("button", name="Sign in"))

    expect(page.locator("#code-error")).to_have_text(WRONG_CODE)
    expect(page.get_by_label("Code from the mail")).to_have_attribute("aria-invalid", "true")
    expect(page.get_by_label("Code from the mail")).to_be_focused()
    assert page.evaluate(INVALID_FIELDS) == [
        {"name": "code", "messages": [WRONG_CODE], "announced": True, "nextToField": True}]
    page.get_by_label("Code from the mail").fill(code)
    submit(page, page.get_by_role("button", name="Sign in"))
    expect_logged_in_as(page, user.username)


def test_the_email_address_logs_in_with_the_password_too(page, new_user):
    user = new_user(email=True)
    page.goto("/auth/login")

    page.get_by_label("Username or email").fill(user.email.upper())
    page.get_by_label("Password", exact=True).fill(user.password)
    submit(page, page.get_by_role("button", name="Log in"))

    expect_logged_in_as(page, user.username)


def test_the_code_pages_label_every_control_and_ask_for_the_right_autofill(page):
    page.goto("/auth/code")
    asking = controls_on(page)
    page.get_by_label("Email", exact=True).fill("nobody@example.com")
    submit(page, page.get_by_role("button", name="Email me a code"))
    typing = controls_on(page)

    assert all(control["labelled"] for control in [*asking.values(), *typing.values()]), (asking, typing)
    assert asking["email"]["autocomplete"] == "email"
    assert typing["code"]["autocomplete"] == "one-time-code"


# The new pages at phone and desktop size; two of them are the README's pictures


def code_request(page, viewport, new_context, site, new_user):
    page.goto("/auth/code")


def code_sent(page, viewport, new_context, site, new_user):
    page.goto("/auth/code")
    page.get_by_label("Email", exact=True).fill(f"someone.{viewport}@example.com")
    submit(page, page.get_by_role("button", name="Email me a code"))


def code_link_elsewhere(page, viewport, new_context, site, new_user):
    user = new_user(email=True)
    ask_for_a_code(new_context().new_page(), user.email)
    page.goto(site.mail_matching(user.email, CODE_LINK).group(1))


def email_unconfirmed(page, viewport, new_context, site, new_user):
    name = "robin" if viewport == "desktop" else f"robin{viewport}"
    sign_up(page, name, f"{name}@example.com")
    page.goto("/account")


def email_change_cancel(page, viewport, new_context, site, new_user):
    user = new_user(email=True)
    elsewhere = new_context().new_page()
    log_in(elsewhere, user)
    change_email(elsewhere, user, f"{user.username}@new.example.org")
    page.goto(site.mail_matching(user.email, CANCEL_LINK).group(1))


def verify_link_invalid(page, viewport, new_context, site, new_user):
    page.goto("/auth/verify/no-such-token")
    return 400


PAGES = {
    "sign-in-code-request": code_request,
    "sign-in-code": code_sent,
    "sign-in-link-elsewhere": code_link_elsewhere,
    "email-unconfirmed": email_unconfirmed,
    "email-change-cancel": email_change_cancel,
    "email-link-invalid": verify_link_invalid,
}
VIEWPORTS = {"phone": PHONE, "desktop": DESKTOP}
DOCS_SHOTS = {("sign-in-code", "desktop"), ("email-unconfirmed", "desktop")}


@pytest.mark.parametrize("viewport", VIEWPORTS)
@pytest.mark.parametrize("name", PAGES)
def test_each_email_page_fits_the_screen_in_its_screenshot(name, viewport, new_context, new_user, live_site, watch,
                                                           screenshots):
    page = new_context(viewport=VIEWPORTS[viewport]).new_page()

    status = PAGES[name](page, viewport, new_context, live_site, new_user) or 200
    watch.expect_status(status)

    page.wait_for_load_state()
    assert (page.url, status) in watch.document_statuses, watch.document_statuses
    expect(page.get_by_role("heading", level=1)).to_be_visible()
    assert page.evaluate(SIDEWAYS_OVERFLOW) <= 0, f"{name} scrolls sideways at {VIEWPORTS[viewport]['width']} px"
    page.screenshot(path=screenshots / f"{name}-{viewport}.png", full_page=True)
    if os.environ.get("REFRESH_DOCS_SCREENSHOTS") == "1" and (name, viewport) in DOCS_SHOTS:
        DOCS_SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=DOCS_SCREENSHOTS / f"{name}-{viewport}.png")
