"""What assistive technology and password managers read: labels, linked and announced
errors, and the autocomplete values that tell a new password from a current one."""

import pytest

from browsing import expect, log_in, log_out, set_up_authenticator, submit

pytestmark = pytest.mark.sqlite_only
# Every control a person fills in, and whether it has a label a screen reader reads.
CONTROLS = """() => [...document.querySelectorAll("input:not([type=hidden]), select, textarea")].map((el) => ({
  id: el.id, name: el.name, labelled: el.labels.length > 0 && [...el.labels].every((l) => l.textContent.trim() !== ""),
  autocomplete: el.getAttribute("autocomplete"),
}))"""
# For each field marked invalid: the texts its aria-describedby points to, and whether one is an alert.
INVALID_FIELDS = r"""() => [...document.querySelectorAll("[aria-invalid=true]")].map((el) => {
  const described = (el.getAttribute("aria-describedby") || "").split(/\s+/).filter(Boolean)
    .map((id) => document.getElementById(id)).filter(Boolean);
  return {
    name: el.name,
    messages: described.map((d) => d.textContent.trim()).filter(Boolean),
    announced: described.some((d) => d.getAttribute("role") === "alert"),
    nextToField: described.every((d) => d.closest(".field") === el.closest(".field")),
  };
})"""


def controls_on(page) -> dict[str, dict]:
    return {control["id"]: control for control in page.evaluate(CONTROLS)}


def test_every_control_on_every_form_has_a_label(new_context, new_user, live_site):
    admin = new_user("ada", "admin", email=True)
    reset_link = live_site.run("reset-link", admin.username).stdout.strip()
    anonymous, signed_in = new_context().new_page(), new_context().new_page()
    log_in(signed_in, admin)

    unlabelled = {}
    for page, path in [(anonymous, "/auth/login"), (anonymous, "/auth/register"), (anonymous, "/auth/reset"),
                       (anonymous, reset_link), (signed_in, "/account"), (signed_in, "/admin/users"),
                       (signed_in, "/admin/users/1"), (signed_in, "/admin/events"),
                       (signed_in, "/auth/confirm?next=/account/security")]:
        page.goto(path)
        controls = controls_on(page)
        assert controls, f"{path} has no form controls"
        unlabelled |= {f"{path} #{id}": c for id, c in controls.items() if not c["labelled"]}

    assert not unlabelled, unlabelled


def test_the_second_factor_forms_are_labelled_and_ask_for_one_time_codes(new_context, new_user):
    user = new_user()
    page = new_context().new_page()
    log_in(page, user)
    page.goto("/account/security")
    submit(page, page.get_by_role("button", name="Set up an authenticator app"))
    setup = controls_on(page)
    set_up_authenticator(page)
    page.goto("/account")
    log_out(page)
    log_in(page, user)
    second = controls_on(page)

    assert setup["code"]["labelled"] and setup["code"]["autocomplete"] == "one-time-code"
    assert second["code"]["labelled"] and second["code"]["autocomplete"] == "one-time-code"
    assert second["recovery-code"]["labelled"]


def test_a_field_error_is_next_to_the_field_linked_to_it_and_announced(page, watch):
    watch.expect_status(400)
    page.goto("/auth/register")
    page.get_by_label("Username").fill("newcomer")
    page.get_by_label("Password", exact=True).fill("long enough password")
    page.get_by_label("Password again").fill("a different password")

    page.get_by_role("button", name="Sign up").click()

    [invalid] = page.evaluate(INVALID_FIELDS)
    assert invalid == {"name": "password_confirm", "messages": ["The two passwords differ."], "announced": True,
                       "nextToField": True}
    expect(page.get_by_label("Password again")).to_be_focused()


def test_each_missing_field_gets_its_own_message(page, watch):
    watch.expect_status(400)
    page.goto("/auth/register")

    page.get_by_role("button", name="Sign up").click()

    invalid = {field["name"]: field for field in page.evaluate(INVALID_FIELDS)}
    assert set(invalid) == {"username", "password"}, invalid
    assert all(f["messages"] and f["announced"] and f["nextToField"] for f in invalid.values()), invalid
    expect(page.get_by_label("Username")).to_be_focused()


def test_password_managers_are_told_which_password_is_which(new_context, new_user, live_site):
    user = new_user(email=True)
    reset_link = live_site.run("reset-link", user.username).stdout.strip()
    anonymous, signed_in = new_context().new_page(), new_context().new_page()
    log_in(signed_in, user)
    expected = {
        "/auth/login": {"username": "username", "password": "current-password"},
        "/auth/register": {"username": "username", "email": "email", "password": "new-password",
                           "password_confirm": "new-password"},
        reset_link: {"password": "new-password", "password_confirm": "new-password"},
        "/account": {"email": "email", "profile-current-password": "current-password",
                     "password-current-password": "current-password", "new_password": "new-password",
                     "new_password_confirm": "new-password"},
    }

    for path, fields in expected.items():
        page = signed_in if path == "/account" else anonymous
        page.goto(path)
        controls = controls_on(page)
        assert {id: controls[id]["autocomplete"] for id in fields} == fields, path
