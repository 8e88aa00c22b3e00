"""The keyboard alone: a sensible tab order, Enter submits, and focus you can always see."""

import re

import pytest

from browsing import expect, expect_logged_in_as, log_in

pytestmark = pytest.mark.sqlite_only
# Computed style of whatever has focus: the ring we promise in authsite.css.
FOCUS_STYLE = r"""() => {
  const el = document.activeElement;
  const style = getComputedStyle(el);
  return {
    tag: el.tagName.toLowerCase(), name: el.id || el.textContent.trim().replace(/\s+/g, " "),
    outline: style.outlineStyle, width: parseFloat(style.outlineWidth),
    isBody: el === document.body,
  };
}"""


def test_a_person_logs_in_with_tab_and_enter(page, new_user):
    user = new_user()
    page.goto("/auth/login")

    expect(page.get_by_label("Username")).to_be_focused()
    page.keyboard.type(user.username)
    page.keyboard.press("Tab")
    expect(page.get_by_label("Password", exact=True)).to_be_focused()
    page.keyboard.type(user.password)
    page.keyboard.press("Tab")
    expect(page.get_by_role("button", name="Show password")).to_be_focused()  # static/password-toggle.js
    page.keyboard.press("Tab")
    expect(page.get_by_label("Remember me on this device")).to_be_focused()
    page.keyboard.press("Space")
    page.keyboard.press("Tab")
    expect(page.get_by_role("button", name="Log in")).to_be_focused()
    for _ in range(3):
        page.keyboard.press("Shift+Tab")
    expect(page.get_by_label("Password", exact=True)).to_be_focused()
    page.keyboard.press("Enter")

    expect(page).to_have_url(re.compile(r"/$"))
    expect_logged_in_as(page, user.username)


def test_the_first_tab_reaches_a_visible_skip_link_that_jumps_to_the_content(page):
    page.goto("/")

    page.keyboard.press("Tab")

    skip = page.get_by_role("link", name="Skip to content")
    expect(skip).to_be_focused()
    box = skip.bounding_box()
    assert box and box["x"] >= 0 and box["y"] >= 0, box
    page.keyboard.press("Enter")
    expect(page).to_have_url(re.compile(r"#main$"))


def test_every_control_on_the_account_page_shows_a_clear_focus_ring(page, new_user):
    log_in(page, new_user())
    page.goto("/account")

    seen = []
    for _ in range(60):  # far more stops than the page has; the loop ends when focus wraps
        page.keyboard.press("Tab")
        focused = page.evaluate(FOCUS_STYLE)
        if focused["isBody"] or (seen and focused == seen[0]):
            break
        seen.append(focused)

    names = [f["name"] for f in seen]
    assert len(seen) >= 10 and "new_password" in names and "Change password" in names, names
    unclear = [f for f in seen if f["outline"] in ("none", "") or f["width"] < 2]
    assert not unclear, unclear


def test_tab_order_follows_the_page_from_header_to_form(page, new_user):
    log_in(page, new_user())
    page.goto("/account")

    order = []
    for _ in range(60):
        page.keyboard.press("Tab")
        focused = page.evaluate(FOCUS_STYLE)
        if focused["isBody"] or focused["name"] in order:
            break
        order.append(focused["name"])

    expected = ["Skip to content", "authsite", "Log out", "first_name", "last_name", "email", "profile-current-password",
                "Save details", "password-current-password", "new_password", "new_password_confirm", "Change password"]
    positions = [order.index(name) for name in expected]
    assert positions == sorted(positions), order
