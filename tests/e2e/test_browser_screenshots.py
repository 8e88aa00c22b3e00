"""Every page at phone width (360 px) and at desktop width (light and dark): nothing scrolls sideways,
and each is photographed into screenshots/ (the folder CI keeps).

`REFRESH_DOCS_SCREENSHOTS=1 pytest tests/e2e -k screenshot` also rewrites the few
small pictures in docs/screenshots/ that the README shows."""

import itertools
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import pytest

from browsing import expect, fill_in_login, log_in, log_out, notice, set_up_authenticator, submit
from e2e_common import DESKTOP, PHONE, REPO, User

pytestmark = pytest.mark.sqlite_only
# Each page at phone and desktop size, and at desktop size in the dark colour scheme too.
VIEWPORTS = {"phone": PHONE, "desktop": DESKTOP, "desktop-dark": DESKTOP}
COLOR_SCHEMES = {"desktop-dark": "dark"}
DOCS_SCREENSHOTS = REPO / "docs" / "screenshots"
# The README's pictures: viewport-sized (not full-page) to stay small.
DOCS_SHOTS = {("login", "phone"), ("login", "desktop"), ("account", "desktop"), ("admin-users", "desktop"),
              ("totp-setup", "desktop"), ("recovery-codes", "desktop"), ("login", "desktop-dark"),
              ("account", "desktop-dark")}
SIDEWAYS_OVERFLOW = "() => document.documentElement.scrollWidth - document.documentElement.clientWidth"


@dataclass
class Cast:
    """The people in the pictures, logged in once for all of them."""

    admin: User
    member: User
    admin_state: dict
    member_state: dict
    member_id: int


PEOPLE = [  # run.py create-user arguments: a few users so the admin list has something to show
    ("ada", "--email", "ada@example.com", "--scope", "super"),
    ("pat",),
    ("grace", "--email", "grace@example.com", "--scope", "admin"),
    ("linus", "--email", "linus@example.org"),
    ("margaret", "--email", "margaret@example.net", "--scope", "reports"),
]


@pytest.fixture(scope="session")
def cast(browser, live_site) -> Cast:
    admin, member = User("ada", email="ada@example.com"), User("pat")
    with ThreadPoolExecutor() as pool:
        list(pool.map(lambda args: live_site.run("create-user", *args, "--password-stdin", stdin=admin.password + "\n"),
                      PEOPLE))
    context = browser.new_context(base_url=live_site.url)
    page = context.new_page()
    log_in(page, admin)
    page.goto("/account")
    page.get_by_label("First name").fill("Ada")
    page.get_by_label("Last name").fill("Lovelace")
    page.get_by_role("button", name="Save details").click()
    expect(notice(page)).to_have_text("Your details have been saved.")
    page.goto("/admin/users?q=pat")
    member_id = int(page.get_by_role("link", name="pat", exact=True).get_attribute("href").rsplit("/", 1)[1])
    admin_state = context.storage_state()
    context.close()
    return Cast(admin, member, admin_state, _logged_in_state(browser, live_site, member), member_id)


def _logged_in_state(browser, site, person: User) -> dict:
    context = browser.new_context(base_url=site.url)
    log_in(context.new_page(), person)
    state = context.storage_state()
    context.close()
    return state


# Each page: how to get there. A step returns the status it expects when that is not 200.

def home_anonymous(page, cast, site):
    page.goto("/")


def home(page, cast, site):
    page.goto("/")


def login(page, cast, site):
    page.goto("/auth/login")


def login_failed(page, cast, site):
    page.goto("/auth/login")
    fill_in_login(page, cast.member, password="not the right one")
    return 401


def register(page, cast, site):
    page.goto("/auth/register")


def register_errors(page, cast, site):
    page.goto("/auth/register")
    page.get_by_label("Password", exact=True).fill("long enough password")
    page.get_by_label("Password again").fill("another password")
    page.get_by_role("button", name="Sign up").click()
    return 400


def reset_request(page, cast, site):
    page.goto("/auth/reset")


def reset_sent(page, cast, site):
    page.goto("/auth/reset")
    page.get_by_label("Username or email").fill("nobody@example.com")
    page.get_by_role("button", name="Send me a link").click()


def reset_form(page, cast, site):
    page.goto(site.run("reset-link", "linus").stdout.strip())


def reset_link_invalid(page, cast, site):
    page.goto("/auth/reset/no-such-token")
    return 400


def logout(page, cast, site):
    page.goto("/auth/logout")


def account(page, cast, site):
    page.goto("/account")


def admin_users(page, cast, site):
    page.goto("/admin/users")


def admin_user(page, cast, site):
    page.goto(f"/admin/users/{cast.member_id}")


def admin_events(page, cast, site):
    page.goto("/admin/events")


def forbidden(page, cast, site):
    page.goto("/admin/users")
    return 403


def not_found(page, cast, site):
    page.goto("/no-such-page")
    return 404


def request_refused(page, cast, site):
    page.goto("/account")
    page.locator("form[action='/account/profile'] input[name=csrf_token]").evaluate("field => { field.value = 'x' }")
    page.get_by_role("button", name="Save details").click()
    return 403


def security(page, cast, site):
    page.goto("/account/security")


def totp_setup(page, cast, site):
    page.goto("/account/security")
    submit(page, page.get_by_role("button", name="Set up an authenticator app"))


_newcomers = itertools.count(1)


def _with_an_app(page, site) -> User:
    """A user of this picture alone, logged in, who has just turned an authenticator app on."""
    person = User(f"sam{next(_newcomers)}")
    site.run("create-user", person.username, "--password-stdin", stdin=person.password + "\n")
    log_in(page, person)
    set_up_authenticator(page)
    return person


def recovery_codes(page, cast, site):
    _with_an_app(page, site)


def second_step(page, cast, site):
    person = _with_an_app(page, site)
    page.goto("/account")
    log_out(page)
    log_in(page, person)


def confirm(page, cast, site):
    page.goto("/auth/confirm?next=/account/security")


PAGES = {  # name: (who is logged in, how to get there)
    "home-anonymous": (None, home_anonymous),
    "home": ("member", home),
    "login": (None, login),
    "login-failed": (None, login_failed),
    "register": (None, register),
    "register-errors": (None, register_errors),
    "reset-request": (None, reset_request),
    "reset-sent": (None, reset_sent),
    "reset-form": (None, reset_form),
    "reset-link-invalid": (None, reset_link_invalid),
    "logout": ("member", logout),
    "account": ("admin", account),
    "admin-users": ("admin", admin_users),
    "admin-user": ("admin", admin_user),
    "admin-events": ("admin", admin_events),
    "forbidden": ("member", forbidden),
    "not-found": (None, not_found),
    "request-refused": ("member", request_refused),
    "security": ("member", security),
    "totp-setup": ("member", totp_setup),
    "recovery-codes": (None, recovery_codes),
    "second-step": (None, second_step),
    "confirm": ("member", confirm),
}


@pytest.mark.parametrize("viewport", VIEWPORTS)
@pytest.mark.parametrize("name", PAGES)
def test_the_page_fits_the_screen_and_is_photographed(name, viewport, new_context, cast, live_site, watch, screenshots):
    who, go_there = PAGES[name]
    state = {"admin": cast.admin_state, "member": cast.member_state}.get(who)
    scheme = COLOR_SCHEMES.get(viewport, "light")
    page = new_context(viewport=VIEWPORTS[viewport], color_scheme=scheme, storage_state=state).new_page()

    status = go_there(page, cast, live_site) or 200
    watch.expect_status(status)  # an error page on purpose: see the console rule in conftest.py

    page.wait_for_load_state()
    assert (page.url, status) in watch.document_statuses, watch.document_statuses
    expect(page.get_by_role("heading", level=1)).to_be_visible()
    assert page.evaluate(SIDEWAYS_OVERFLOW) <= 0, f"{name} scrolls sideways at {VIEWPORTS[viewport]['width']} px"
    page.screenshot(path=screenshots / f"{name}-{viewport}.png", full_page=True)
    if os.environ.get("REFRESH_DOCS_SCREENSHOTS") == "1" and (name, viewport) in DOCS_SHOTS:
        DOCS_SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=DOCS_SCREENSHOTS / f"{name}-{viewport}.png")

