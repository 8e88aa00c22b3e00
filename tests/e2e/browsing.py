"""What a person does on the site, as steps the browser tests share."""

import re
import time

import pytest

from authsite.factors import totp

from e2e_common import PLAYWRIGHT_MISSING

# Skips every test module that imports this one when Playwright is missing
# (and under CI=true the top-level conftest turns that skip into a failure).
sync_api = pytest.importorskip("playwright.sync_api", reason=PLAYWRIGHT_MISSING)
expect = sync_api.expect
Locator, Page = sync_api.Locator, sync_api.Page

NEW_PASSWORD = "a brand new secret 42"


def log_in(page: Page, user, *, remember: bool = False, password: str | None = None) -> None:
    """Open the login page, fill it in and press the button (the page then follows the redirect)."""
    page.goto("/auth/login")
    fill_in_login(page, user, remember=remember, password=password)


def fill_in_login(page: Page, user, *, remember: bool = False, password: str | None = None) -> None:
    page.get_by_label("Username").fill(user.username)
    page.get_by_label("Password", exact=True).fill(password or user.password)
    if remember:
        page.get_by_label("Remember me on this device").check()
    submit(page, page.get_by_role("button", name="Log in"))


def submit(page: Page, button: Locator) -> None:
    """Press a form's button and wait until the page it leads to (after any redirect) has loaded."""
    with page.expect_navigation():
        button.click()


def header(page: Page) -> Locator:
    return page.get_by_role("navigation", name="Account")


def log_out(page: Page) -> None:
    submit(page, header(page).get_by_role("button", name="Log out"))


def notice(page: Page) -> Locator:
    """The notice area where a flash message shows after a redirect."""
    return page.locator("main .notice[role=status]")


def account_link(page: Page, username: str) -> Locator:
    """The header's link to the account page, which names who is signed in."""
    return header(page).get_by_role("link", name=f"Signed in as {username}", exact=True)


def expect_logged_in_as(page: Page, username: str) -> None:
    expect(account_link(page, username)).to_be_visible()


def expect_on_login_page(page: Page, next_path: str | None = None) -> None:
    url = r"/auth/login" + (re.escape(f"?next={next_path}") if next_path else r"(\?.*)?") + "$"
    expect(page).to_have_url(re.compile(url))
    expect(page.get_by_role("heading", name="Log in")).to_be_visible()


def path_of(page: Page) -> str:
    return re.sub(r"^https?://[^/]+", "", page.url)


def session_cookie(context) -> dict | None:
    return next((c for c in context.cookies() if c["name"] == "session"), None)


def change_password(page: Page, user, new_password: str = NEW_PASSWORD) -> None:
    page.goto("/account")
    form = page.locator("form[action='/account/password']")
    form.get_by_label("Current password").fill(user.password)
    form.get_by_label("New password", exact=True).fill(new_password)
    form.get_by_label("New password again").fill(new_password)
    submit(page, form.get_by_role("button", name="Change password"))
    user.password = new_password


def set_up_authenticator(page: Page) -> tuple[str, list[str]]:
    """From the security page to the recovery codes, as a person with a phone would: the secret
    (read off the page, as the app would scan it) and the ten codes shown."""
    page.goto("/account/security")
    submit(page, page.get_by_role("button", name="Set up an authenticator app"))
    expect(page.get_by_role("heading", name="Set up an authenticator app")).to_be_visible()
    secret = page.locator("#setup-key").inner_text().replace(" ", "")
    page.get_by_label("Code from your app").fill(totp.code_at(secret, time.time()))
    submit(page, page.get_by_role("button", name="Turn it on"))
    expect(page.get_by_role("heading", name="The authenticator app is on")).to_be_visible()
    codes = page.locator("code.recovery-code").all_inner_texts()
    assert len(codes) == 10
    return secret, codes
