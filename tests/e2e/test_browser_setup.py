"""The first account of a fresh site, made in the browser from the link `python run.py` prints
while the site has no user: no second terminal, no create-user."""

import re

import pytest

from browsing import expect, expect_logged_in_as, header, notice, path_of, submit
from support import PASSWORD

pytestmark = pytest.mark.sqlite_only
LINK = re.compile(r"Create the first account: (http://\S+/auth/setup/[A-Za-z0-9_-]+)")


@pytest.fixture
def live_site(empty_site):
    """Here the pages are those of a site with no user yet (see conftest.py)."""
    return empty_site


def printed_link(site) -> str:
    log = (site.data_dir.parent / "server.log").read_text()
    found = LINK.search(log)
    assert found, log
    return found.group(1)


def fill_in_setup(page, password: str, confirm: str) -> None:
    page.get_by_label("Username").fill("root")
    page.get_by_label("Password", exact=True).fill(password)
    page.get_by_label("Password again").fill(confirm)
    submit(page, page.get_by_role("button", name="Create the account"))


def test_the_printed_link_makes_the_first_admin_who_lands_logged_in(page, live_site, watch):
    link = printed_link(live_site)
    page.goto(link)
    expect(page.get_by_role("heading", name="Create the first account")).to_be_visible()

    watch.expect_status(400)
    fill_in_setup(page, PASSWORD, "not the same phrase")
    expect(page.get_by_text("The two passwords differ.").first).to_be_visible()
    fill_in_setup(page, PASSWORD, PASSWORD)

    assert path_of(page) == "/admin/users"
    expect_logged_in_as(page, "root")
    expect(header(page).get_by_role("link", name="Admin")).to_be_visible()
    expect(notice(page)).to_contain_text("The setup link no longer works.")

    watch.expect_status(404)
    answer = page.goto(link)
    assert answer.status == 404
    expect(page.get_by_role("heading", name="Page not found")).to_be_visible()
