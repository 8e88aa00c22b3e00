"""Forms that are kind to the person filling them in (issue 16): every problem shown after one
submit, "Remember me" kept, a way to see the password typed, a way back out of logging out, and
a second step before deactivating someone."""

import time

import pytest

from browsing import expect, header, log_in, notice, path_of, session_cookie, submit

pytestmark = pytest.mark.sqlite_only
# Each field marked invalid: its messages (through aria-describedby) and whether they sit beside it.
INVALID_FIELDS = r"""() => [...document.querySelectorAll("[aria-invalid=true]")].map((el) => {
  const described = (el.getAttribute("aria-describedby") || "").split(/\s+/).filter(Boolean)
    .map((id) => document.getElementById(id)).filter(Boolean);
  return {
    name: el.name,
    messages: described.filter((d) => d.classList.contains("field-error")).map((d) => d.textContent.trim()),
    nextToField: described.every((d) => d.closest(".field") === el.closest(".field")),
  };
})"""
# The summary's links: where each points, and whether that is a field of the form.
SUMMARY_LINKS = r"""() => [...document.querySelectorAll(".error-summary a")].map((a) => {
  const target = document.getElementById(a.getAttribute("href").slice(1));
  return {href: a.getAttribute("href"), text: a.textContent.trim(), isField: Boolean(target && target.form)};
})"""


def sign_up_with(page, username: str, email: str, password: str, confirm: str) -> None:
    page.get_by_label("Username").fill(username)
    page.get_by_label("Email (optional, for password resets)").fill(email)
    page.get_by_label("Password", exact=True).fill(password)
    page.get_by_label("Password again").fill(confirm)
    submit(page, page.get_by_role("button", name="Sign up"))


def test_one_sign_up_submit_shows_every_problem_beside_its_field_with_a_linked_summary(page, watch):
    watch.expect_status(400)
    page.goto("/auth/register")

    sign_up_with(page, "x", "not-an-email", "password", "password")

    invalid = page.evaluate(INVALID_FIELDS)
    assert [field["name"] for field in invalid] == ["username", "email", "password"], invalid
    assert all(len(field["messages"]) == 1 and field["nextToField"] for field in invalid), invalid
    summary = page.get_by_role("alert").filter(has=page.get_by_role("heading", name="3 problems to fix"))
    expect(summary).to_be_visible()
    links = page.evaluate(SUMMARY_LINKS)
    assert [link["href"] for link in links] == ["#username", "#email", "#password"], links
    assert all(link["isField"] for link in links), links
    for link, field in zip(links, invalid):
        assert field["messages"][0] in link["text"], (link, field)
    expect(page.get_by_label("Username")).to_be_focused()

    # The fourth field is wrong too once the two passwords differ: four problems, still one submit.
    sign_up_with(page, "x", "not-an-email", "password", "passwrod")

    assert [f["name"] for f in page.evaluate(INVALID_FIELDS)] == ["username", "email", "password", "password_confirm"]
    expect(page.get_by_role("heading", name="4 problems to fix")).to_be_visible()


def test_remember_me_stays_ticked_after_a_failed_login(page, new_user, watch):
    watch.expect_status(401)
    user = new_user()

    log_in(page, user, remember=True, password="not the password at all")

    expect(page.get_by_role("alert")).to_have_text("Wrong username or password.")
    expect(page.get_by_label("Remember me on this device")).to_be_checked()
    page.get_by_label("Password", exact=True).fill(user.password)
    submit(page, page.get_by_role("button", name="Log in"))
    assert session_cookie(page.context)["expires"] > time.time() + 3600  # remembered: outlives the browser


def test_show_password_reveals_what_was_typed_and_hides_it_again(page):
    page.goto("/auth/register")
    password = page.get_by_label("Password", exact=True)
    password.fill("a secret phrase")
    toggles = page.get_by_role("button", name="Show password")
    expect(toggles).to_have_count(2)  # one per password field
    toggle = toggles.first

    assert toggle.get_attribute("type") == "button"
    assert toggle.get_attribute("aria-controls") == password.get_attribute("id")
    assert toggle.bounding_box()["height"] >= 44
    toggle.click()

    expect(password).to_have_attribute("type", "text")
    expect(password).to_have_value("a secret phrase")
    hide = page.get_by_role("button", name="Hide password")
    expect(hide).to_have_attribute("aria-controls", password.get_attribute("id"))
    hide.click()
    expect(password).to_have_attribute("type", "password")
    expect(page.get_by_role("button", name="Show password")).to_have_count(2)


def test_a_shown_password_is_a_password_field_again_when_the_form_is_sent(page, watch):
    watch.expect_status(400)
    page.goto("/auth/register")
    page.get_by_label("Password", exact=True).fill("a secret phrase")
    page.get_by_role("button", name="Show password").first.click()
    # The page keeps the field's type as the form leaves (browsers keep text fields' history).
    page.evaluate("""() => document.querySelector("form[action='/auth/register']").addEventListener(
        "submit", () => { sessionStorage.sent = document.getElementById("password").type; })""")

    submit(page, page.get_by_role("button", name="Sign up"))

    assert page.evaluate("() => sessionStorage.sent") == "password"


def test_a_shown_password_is_hidden_again_when_the_page_is_left_unsent(page):
    page.goto("/auth/login")
    page.get_by_label("Password", exact=True).fill("a secret phrase")
    page.get_by_role("button", name="Show password").click()
    # Left by a link, not sent: the page as the back button (bfcache) or a restored session
    # would show it again must not have the password in plain sight.
    page.evaluate("""() => window.addEventListener(
        "pagehide", () => { sessionStorage.left = document.getElementById("password").type; })""")

    submit(page, page.get_by_role("link", name="Forgot your password?"))

    assert page.evaluate("() => sessionStorage.left") == "password"


def test_without_javascript_the_password_fields_work_and_offer_no_toggle(new_context, new_user):
    user = new_user()
    page = new_context(java_script_enabled=False).new_page()
    page.goto("/auth/login")
    expect(page.get_by_label("Password", exact=True)).to_have_attribute("type", "password")
    expect(page.get_by_role("button", name="Show password")).to_have_count(0)

    log_in(page, user)

    assert path_of(page) == "/"


def test_the_logout_page_has_a_cancel_that_goes_back(page, new_user):
    user = new_user()
    log_in(page, user)

    page.goto("/auth/logout?next=/account/security")
    submit(page, page.get_by_role("link", name="Cancel"))

    assert path_of(page) == "/account/security"
    page.goto("/auth/logout")
    submit(page, page.get_by_role("link", name="Cancel"))
    assert path_of(page) == "/account"
    expect(header(page).get_by_role("button", name="Log out")).to_be_visible()


def test_deactivate_asks_first_and_cancel_changes_nothing(new_context, new_user):
    admin, bob = new_user("ada", "admin"), new_user("bob")
    page, bobs_page = new_context().new_page(), new_context().new_page()
    log_in(page, admin)
    log_in(bobs_page, bob)
    page.goto(f"/admin/users?q={bob.username}")
    submit(page, page.get_by_role("link", name=bob.username, exact=True))
    user_page = path_of(page)

    submit(page, page.get_by_role("link", name="Deactivate…"))
    expect(page.get_by_role("heading", name=f"Deactivate {bob.username}?")).to_be_visible()
    submit(page, page.get_by_role("link", name="Cancel"))

    assert path_of(page) == user_page
    bobs_page.reload()
    expect(header(bobs_page).get_by_role("button", name="Log out")).to_be_visible()

    submit(page, page.get_by_role("link", name="Deactivate…"))
    submit(page, page.get_by_role("button", name=f"Deactivate {bob.username}"))

    expect(notice(page)).to_have_text("Changes saved.")
    expect(page.get_by_text("deactivated", exact=True)).to_be_visible()
    bobs_page.reload()
    expect(header(bobs_page).get_by_role("link", name="Log in")).to_be_visible()
