"""The admin pages in Chromium: finding a user and granting a permission."""

import re

import pytest

from browsing import expect, header, log_in, log_out, notice

pytestmark = pytest.mark.sqlite_only


def test_a_super_user_grants_admin_and_the_user_can_then_open_the_admin_pages(new_context, new_user):
    root, bob = new_user("root", "super"), new_user("bob")
    page = new_context().new_page()
    log_in(page, root)

    header(page).get_by_role("link", name="Admin").click()
    page.get_by_label("Find users whose name or email starts with").fill(bob.username)
    page.get_by_role("button", name="Search").click()
    page.get_by_role("link", name=bob.username, exact=True).click()
    page.get_by_label("admin", exact=True).check()
    page.get_by_role("button", name="Save", exact=True).click()

    expect(notice(page)).to_have_text("Changes saved.")
    expect(page.get_by_label("admin", exact=True)).to_be_checked()
    bobs_page = new_context().new_page()
    log_in(bobs_page, bob)
    header(bobs_page).get_by_role("link", name="Admin").click()
    expect(bobs_page.get_by_role("heading", name="Users")).to_be_visible()


def test_an_admin_grants_a_permission_the_site_lets_admins_hand_out(page, new_user):
    admin, carol = new_user("ada", "admin"), new_user("carol")
    log_in(page, admin)
    page.goto(f"/admin/users?q={carol.username}")
    page.get_by_role("link", name=carol.username, exact=True).click()

    page.get_by_label("reports", exact=True).check()
    page.get_by_role("button", name="Save", exact=True).click()

    expect(notice(page)).to_have_text("Changes saved.")
    expect(page.get_by_label("reports", exact=True)).to_be_checked()


def test_a_super_user_adds_a_custom_permission_by_typing_it(page, new_user):
    root, erin = new_user("root", "super"), new_user("erin")
    log_in(page, root)
    page.goto(f"/admin/users?q={erin.username}")
    page.get_by_role("link", name=erin.username, exact=True).click()

    page.get_by_label("Add a permission").fill("billing")
    page.get_by_role("button", name="Save", exact=True).click()

    expect(notice(page)).to_have_text("Changes saved.")
    expect(page.get_by_label("billing", exact=True)).to_be_checked()


def test_an_admin_makes_a_reset_link_and_its_page_still_lets_them_log_out(page, new_user):
    """The page showing the link keeps its URL out of Referer headers, yet its own
    forms must still count as same-origin (they would not under `no-referrer`)."""
    admin, dave = new_user("ada", "admin"), new_user("dave")
    log_in(page, admin)
    page.goto(f"/admin/users?q={dave.username}")
    page.get_by_role("link", name=dave.username, exact=True).click()

    page.get_by_role("button", name="Make a password-reset link").click()

    expect(page.get_by_label("Link")).to_have_value(re.compile(r"/auth/reset/[\w-]{40,}$"))
    log_out(page)
    expect(notice(page)).to_have_text("You are logged out.")
