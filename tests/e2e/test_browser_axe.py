"""axe-core, from its npm package, run in every page a person meets, in the light and the dark
colour scheme: what it finds (contrast, names, landmarks, ARIA misuse) is a failure."""

import re

import pytest

from browsing import log_in, set_up_authenticator, submit
from e2e_common import REPO, User

pytestmark = pytest.mark.sqlite_only

AXE = REPO / "tests" / "e2e" / "node_modules" / "axe-core" / "axe.min.js"
# The rules' ids, impact and where they failed: enough to find the element and fix it.
RUN_AXE = """async () => {
  const result = await axe.run(document, {resultTypes: ["violations"]});
  return result.violations.map((v) => ({
    rule: v.id, impact: v.impact,
    where: v.nodes.slice(0, 4).map((n) => n.target.join(" ") + ": " + n.failureSummary.split("\\n").slice(1, 2).join("")),
  }));
}"""


@pytest.fixture(scope="module")
def axe_source() -> str:
    if not AXE.exists():
        pytest.skip("axe-core is not installed: npm ci --prefix tests/e2e")
    return AXE.read_text()


@pytest.fixture(params=["light", "dark"])
def scheme(request) -> str:
    return request.param


@pytest.fixture
def check(axe_source, scheme):
    """check(page, label): run axe in the page as it is now; every violation is kept, keyed by `label`."""
    found: dict[str, list] = {}

    def run(page, label: str) -> None:
        # Evaluated through the DevTools protocol, so the page's CSP (no inline script) still holds for the site.
        page.evaluate(axe_source)
        violations = page.evaluate(RUN_AXE)
        if violations:
            found[f"{scheme} {label}"] = violations

    run.found = found
    return run


def test_anonymous_pages_have_no_axe_violations(new_context, new_user, live_site, watch, check, scheme):
    user = new_user(email=True)
    reset_link = live_site.run("reset-link", user.username).stdout.strip()
    page = new_context(color_scheme=scheme).new_page()
    watch.expect_status(400)
    watch.expect_status(401)
    watch.expect_status(404)
    for path in ["/auth/login", "/auth/register", "/auth/reset", reset_link, "/auth/code", "/auth/logout",
                 "/no/such/page"]:
        page.goto(path)
        check(page, path)

    page.goto("/auth/login")
    page.get_by_label("Username").fill(user.username)
    page.get_by_label("Password", exact=True).fill("not the password")
    submit(page, page.get_by_role("button", name="Log in"))
    check(page, "failed login")
    page.goto("/auth/register")
    submit(page, page.get_by_role("button", name="Sign up"))
    check(page, "refused sign-up")
    page.goto("/auth/reset")
    page.get_by_label(re.compile("Username or email")).fill(user.username)
    submit(page, page.get_by_role("button", name=re.compile("link", re.I)))
    check(page, "reset asked")

    assert check.found == {}


def test_a_members_pages_have_no_axe_violations(new_context, new_user, watch, check, scheme):
    user = new_user()
    page = new_context(color_scheme=scheme).new_page()
    log_in(page, user)
    watch.expect_status(403)
    for path in ["/", "/account", "/account/security", "/account/sessions/revoke-others", "/auth/logout",
                 "/admin/users"]:
        page.goto(path)
        check(page, path)

    page.goto("/account/security")
    submit(page, page.get_by_role("button", name="Set up an authenticator app"))
    check(page, "authenticator setup")
    set_up_authenticator(page)
    check(page, "recovery codes")

    assert check.found == {}


def test_an_admins_pages_have_no_axe_violations(new_context, new_user, check, scheme):
    admin = new_user("ada", "admin", email=True)
    other = new_user("bob")
    page = new_context(color_scheme=scheme).new_page()
    log_in(page, admin)
    for path in ["/admin/users", f"/admin/users?q={other.username}", "/admin/events", "/admin/events?kind=login"]:
        page.goto(path)
        check(page, path)
    page.goto("/admin/users")
    submit(page, page.get_by_role("link", name=other.username, exact=True))
    check(page, "a user's page")
    user_page = page.url
    for question in ["deactivate", "revoke-sessions"]:
        page.goto(f"{user_page}/{question}")
        check(page, f"asking before {question}")

    assert check.found == {}


def test_the_second_step_and_confirm_pages_have_no_axe_violations(new_context, new_user, live_site, check, scheme):
    user = new_user()
    page = new_context(color_scheme=scheme).new_page()
    log_in(page, user)
    page.goto("/account/security")
    submit(page, page.get_by_role("button", name="Set up an authenticator app"))
    set_up_authenticator(page)
    live_site.age_sessions(user.username)
    page.goto("/auth/confirm?next=/account/security")
    check(page, "/auth/confirm")

    second = new_context(color_scheme=scheme).new_page()
    log_in(second, User(username=user.username, password=user.password))
    check(second, "/auth/mfa")

    assert check.found == {}


def test_the_check_itself_catches_a_field_without_a_label(page, check, scheme):
    page.goto("/auth/login")
    page.evaluate("() => document.querySelector('label[for=password]').remove()")

    check(page, "login with a label taken away")

    [(label, violations)] = check.found.items()
    assert label == f"{scheme} login with a label taken away"
    assert "label" in {v["rule"] for v in violations}
