"""Passkeys in Chromium, the way a person goes through them: add one on the security page, sign in
with it (the button, or the username field's autofill), use it after the password and to confirm,
and remove it.

The person's device is a DevTools virtual authenticator (the WebAuthn domain, through Playwright's
CDP session): a laptop's fingerprint reader ("internal", which Chromium also offers in autofill) or
a security key ("usb", which it does not). It verifies the user and, while it "answers at once"
(automatic presence simulation), approves every request it can without a prompt.

Browsers offer passkeys only on a host name, so this module browses the passkey site of conftest.py
(http://localhost:PORT) instead of live_site (127.0.0.1, which has none and says so).

What Chromium 156 does, as measured while writing these tests:
- The login page asks for a passkey in the username field's autofill as soon as it loads
  (conditional mediation). A device that answers at once answers that request at once too: the
  page signs in with no click, where a person would pick the passkey from the autofill list.
- A request that reached the device while it did not answer at once waits for good: turning
  answering at once on later does not answer it (only later requests).
- With no passkey for the site, the device refuses any request at once (NotAllowedError), the
  autofill one included; the page must keep quiet about the latter (the person asked nothing).
- A device that still holds a passkey the site removed, and answers at once, makes the login page
  loop: autofill, refused, the login page again, its autofill... A person picks from the list, so
  the tests that sign in with the button keep the autofill request waiting (see sign_in_with_button).
"""

import os
import re
from dataclasses import dataclass

import pytest

from browsing import expect, expect_logged_in_as, header, log_in, log_out, notice, path_of, session_cookie, submit
from e2e_common import DESKTOP, PHONE, REPO, User
from test_browser_accessibility import controls_on

pytestmark = pytest.mark.sqlite_only
OPTIONS = re.compile(r"/api/auth/passkey/options$")
# Between the options' arrival and navigator.credentials.get() reaching the device there is only the
# page's script and one message inside the browser (a few ms); this is a wide margin for a busy machine.
REQUEST_REACHES_THE_DEVICE_MS = 500
VIEWPORTS = {"phone": PHONE, "desktop": DESKTOP}
DOCS_SCREENSHOTS = REPO / "docs" / "screenshots"
SIDEWAYS_OVERFLOW = "() => document.documentElement.scrollWidth - document.documentElement.clientWidth"


@pytest.fixture(scope="session")
def live_site(passkey_site):
    """Here the pages, users and sessions are the passkey site's (see conftest.py)."""
    return passkey_site


@dataclass
class Device:
    """A virtual authenticator plugged into one page's browser."""

    cdp: object
    id: str

    def answers_at_once(self, on: bool) -> None:
        self.cdp.send("WebAuthn.setAutomaticPresenceSimulation", {"authenticatorId": self.id, "enabled": on})

    def passkeys(self) -> list[dict]:
        return self.cdp.send("WebAuthn.getCredentials", {"authenticatorId": self.id})["credentials"]

    def unplug(self) -> None:
        self.cdp.send("WebAuthn.removeVirtualAuthenticator", {"authenticatorId": self.id})


def plug_in(page, transport: str = "internal") -> Device:
    cdp = page.context.new_cdp_session(page)
    cdp.send("WebAuthn.enable", {"enableUI": False})
    answer = cdp.send("WebAuthn.addVirtualAuthenticator", {"options": {
        "protocol": "ctap2", "transport": transport, "hasResidentKey": True, "hasUserVerification": True,
        "isUserVerified": True, "automaticPresenceSimulation": True,
    }})
    return Device(cdp, answer["authenticatorId"])


@pytest.fixture
def laptop(page) -> Device:
    """The person's laptop, with a fingerprint reader that keeps passkeys."""
    return plug_in(page)


def add_passkey(page, name: str = "Laptop") -> None:
    """From the security page: name it, press the button (the device answers), follow where it leads."""
    page.goto("/account/security")
    page.get_by_label("Name for the new passkey (optional)").fill(name)
    submit(page, page.get_by_role("button", name="Add a passkey"))


def with_a_passkey(page, user, name: str = "Laptop") -> None:
    """The user logs in with the password, adds a passkey (saving the codes) and logs out."""
    log_in(page, user)
    add_passkey(page, name)
    page.get_by_role("link", name="I have saved them").click()
    log_out(page)


def sign_in_with_button(page, device: Device, path: str = "/auth/login", *, remember: bool = False) -> None:
    """Open the login page and press "Sign in with a passkey", as a person who ignores the autofill.

    The page's autofill request starts as it loads; a device answering at once would sign in
    through it before any click. So the device waits while that request reaches it (it then waits
    for good, like an autofill list nobody picks from), and answers at once only for the button's
    request; the page's script aborts the autofill request first. (With no wait at all the autofill
    won 4 times in 30, with 100 ms never in 30. Should it win, the login page goes before the click
    and the click fails: the button's own options request is awaited.)"""
    device.answers_at_once(False)
    with page.expect_response(OPTIONS):  # the autofill request's options: get() comes next
        page.goto(path)
    if remember:
        page.get_by_label("Remember me on this device").check()
    page.wait_for_timeout(REQUEST_REACHES_THE_DEVICE_MS)
    device.answers_at_once(True)
    with page.expect_navigation(), page.expect_request(OPTIONS):  # the button's own request
        page.get_by_role("button", name="Sign in with a passkey").click()


def passkey_status(page):
    """Where the page's script says why a passkey request did not work."""
    return page.locator("form[data-passkey] .passkey-status")


# Adding one


def test_the_first_passkey_brings_recovery_codes_and_is_listed(page, new_user, laptop):
    user = new_user()
    log_in(page, user)
    page.goto("/account/security")
    expect(page.locator("main")).to_contain_text("No passkeys yet.")

    add_passkey(page, "My laptop")

    expect(page.get_by_role("heading", level=1)).to_have_text("Your passkey is added")
    assert len(page.locator("code.recovery-code").all_inner_texts()) == 10
    [held] = laptop.passkeys()
    assert (held["rpId"], held["userName"], held["isResidentCredential"]) == ("localhost", user.username, True)
    page.get_by_role("link", name="I have saved them").click()
    row = page.get_by_role("table", name="Your passkeys").get_by_role("row").filter(has_text="My laptop")
    expect(row).to_contain_text("Never")  # last used
    expect(row.get_by_role("button", name="Remove the passkey My laptop")).to_be_visible()
    expect(page.locator("main")).to_contain_text("10 unused recovery codes left")


def test_a_second_passkey_from_another_device_is_added_with_a_notice(page, new_user, laptop):
    user = new_user()
    log_in(page, user)
    add_passkey(page, "Laptop")
    laptop.unplug()
    plug_in(page)  # a phone, say

    add_passkey(page, "Phone")

    expect(page).to_have_url(re.compile(r"/account/security$"))
    expect(notice(page)).to_have_text("Your passkey is added. You can sign in with it, or use it after your password.")
    table = page.get_by_role("table", name="Your passkeys")
    expect(table.get_by_role("button", name=re.compile("^Remove the passkey"))).to_have_count(2)
    expect(page.locator("main")).to_contain_text("10 unused recovery codes left")  # the same codes


def test_the_same_device_cannot_add_a_second_passkey_and_says_so(page, new_user, laptop):
    user = new_user()
    log_in(page, user)
    add_passkey(page)
    page.goto("/account/security")

    page.get_by_role("button", name="Add a passkey").click()

    expect(passkey_status(page)).to_have_text("This device already holds a passkey for your account.")
    expect(page.get_by_role("button", name="Add a passkey")).to_be_enabled()  # ready for another device
    assert len(laptop.passkeys()) == 1


# Signing in with it


def test_the_button_signs_in_with_the_passkey(page, new_user, laptop):
    user = new_user()
    with_a_passkey(page, user)

    sign_in_with_button(page, laptop, "/auth/login?next=/account/security")

    expect(page).to_have_url(re.compile(r"/account/security$"))
    expect_logged_in_as(page, user.username)
    row = page.get_by_role("table", name="Your passkeys").get_by_role("row").filter(has_text="Laptop")
    expect(row).not_to_contain_text("Never")  # last used: just now


def test_remember_me_ticked_before_the_button_keeps_the_session(page, new_user, laptop):
    user = new_user()
    with_a_passkey(page, user)

    sign_in_with_button(page, laptop, remember=True)

    expect_logged_in_as(page, user.username)
    assert session_cookie(page.context)["expires"] > 0  # kept after the browser closes, not a session cookie


def test_opening_the_login_page_signs_in_through_autofill(page, new_user, laptop):
    # In a person's browser the passkey shows in the username field's autofill and they pick it;
    # the virtual device picks it by itself, so opening the page is all it takes here.
    user = new_user()
    with_a_passkey(page, user)

    page.goto("/auth/login?next=/account", wait_until="commit")  # it moves on by itself

    expect(page).to_have_url(re.compile(r"/account$"))
    expect_logged_in_as(page, user.username)


def test_the_login_page_offers_passkeys_in_the_username_autofill(page):
    page.goto("/auth/login")

    assert controls_on(page)["username"]["autocomplete"] == "username webauthn"


def test_on_a_device_without_the_passkey_the_button_says_to_try_again(page, new_user, new_context):
    user = new_user()
    elsewhere = new_context().new_page()  # another computer
    plug_in(elsewhere)
    with_a_passkey(elsewhere, user)
    plug_in(page)  # this one's reader holds nothing for the site
    with page.expect_response(OPTIONS):
        page.goto("/auth/login")
    page.wait_for_timeout(REQUEST_REACHES_THE_DEVICE_MS)  # the autofill request is refused by now...
    expect(passkey_status(page)).to_be_hidden()  # ...and the page says nothing: nobody asked

    page.get_by_role("button", name="Sign in with a passkey").click()

    expect(passkey_status(page)).to_have_text(
        "The passkey request was cancelled or timed out. Try again when you are ready.")
    expect(page.get_by_role("button", name="Sign in with a passkey")).to_be_enabled()
    assert path_of(page) == "/auth/login"
    expect(header(page).get_by_role("link", name="Log in")).to_be_visible()


# After the password, and to confirm


def test_after_the_password_the_passkey_answers_the_second_step(page, new_user, laptop):
    user = new_user()
    with_a_passkey(page, user)
    laptop.answers_at_once(False)  # the person types the password instead of picking the passkey
    log_in(page, user)
    expect(page.get_by_role("heading", name="Enter your code")).to_be_visible()
    laptop.answers_at_once(True)  # no autofill on this page

    submit(page, page.get_by_role("button", name="Use a passkey"))

    expect(page).to_have_url(re.compile(r"/$"))
    expect_logged_in_as(page, user.username)


def test_a_stale_session_confirms_with_the_passkey(page, new_user, live_site, laptop):
    user = new_user()
    log_in(page, user)
    add_passkey(page)
    live_site.age_sessions(user.username)

    page.goto("/account/security")
    submit(page, page.get_by_role("button", name="Make new recovery codes"))
    expect(page.get_by_role("heading", name="Confirm it is you")).to_be_visible()
    submit(page, page.get_by_role("button", name="Use a passkey"))

    expect(page).to_have_url(re.compile(r"/account/security$"))
    submit(page, page.get_by_role("button", name="Make new recovery codes"))
    expect(page.get_by_role("heading", level=1)).to_have_text("New recovery codes")


# Removing it


def test_a_removed_passkey_is_refused_with_a_message(page, new_user, watch):
    watch.expect_status(401)
    key = plug_in(page, "usb")  # a security key: never in autofill, so only the button asks it
    user = new_user()
    log_in(page, user)
    add_passkey(page, "Security key")
    page.goto("/account/security")

    submit(page, page.get_by_role("button", name="Remove the passkey Security key"))

    expect(notice(page)).to_have_text("The passkey is removed and can no longer sign in.")
    expect(page.locator("main")).to_contain_text("No passkeys yet.")
    log_out(page)
    assert len(key.passkeys()) == 1  # the site forgot it; the key did not
    page.goto("/auth/login")
    submit(page, page.get_by_role("button", name="Sign in with a passkey"))
    expect(page.get_by_role("alert")).to_have_text(
        "That passkey was not accepted. Try again, or log in with your password.")
    expect(header(page).get_by_role("link", name="Log in")).to_be_visible()


# What the security page looks like with one, to people and to screen readers


def test_the_security_page_with_a_passkey_is_labelled_for_screen_readers(page, new_user, laptop):
    user = new_user()
    log_in(page, user)
    add_passkey(page, "Laptop")
    page.goto("/account/security")

    unlabelled = [id for id, control in controls_on(page).items() if not control["labelled"]]
    assert not unlabelled, unlabelled
    table = page.get_by_role("table", name="Your passkeys")
    expect(table.get_by_role("columnheader")).to_have_text(["Name", "Added", "Last used", "Remove"])
    expect(table.get_by_role("button", name="Remove the passkey Laptop")).to_be_visible()


@pytest.mark.parametrize("viewport", VIEWPORTS)
def test_screenshot_of_the_security_page_with_a_passkey(viewport, new_context, live_site, screenshots):
    """As test_browser_screenshots.py: it fits the screen, goes into screenshots/, and with
    REFRESH_DOCS_SCREENSHOTS=1 the desktop one into docs/screenshots/passkeys-desktop.png."""
    page = new_context(viewport=VIEWPORTS[viewport]).new_page()
    device = plug_in(page)
    person = User({"phone": "grace", "desktop": "ada"}[viewport])  # one name per picture, for the header
    live_site.run("create-user", person.username, "--password-stdin", stdin=person.password + "\n")
    with_a_passkey(page, person)
    sign_in_with_button(page, device, "/auth/login?next=/account/security")  # so "Last used" has a time

    expect(page.get_by_role("table", name="Your passkeys")).to_be_visible()
    assert page.evaluate(SIDEWAYS_OVERFLOW) <= 0, f"it scrolls sideways at {VIEWPORTS[viewport]['width']} px"
    page.screenshot(path=screenshots / f"passkeys-{viewport}.png", full_page=True)
    if os.environ.get("REFRESH_DOCS_SCREENSHOTS") == "1" and viewport == "desktop":
        DOCS_SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        # Viewport-sized like the README's other pictures, from the Passkeys card down.
        page.locator("section[aria-labelledby=passkeys-heading]").evaluate("card => card.scrollIntoView()")
        page.screenshot(path=DOCS_SCREENSHOTS / "passkeys-desktop.png")
