"""What the browser receives for the stylesheet and a page: a stylesheet it keeps for a year
and never asks for again, and text that crossed the wire gzipped."""

import re

import pytest

pytestmark = pytest.mark.sqlite_only


def responses_while(page, action) -> dict[str, object]:
    """The responses the page received during `action`, by URL path."""
    seen = {}
    page.on("response", lambda response: seen.setdefault(re.sub(r"^https?://[^/]+", "", response.url), response))
    action()
    return seen


def stylesheet(responses: dict) -> object:
    [found] = [r for path, r in responses.items() if path.startswith("/static/authsite.")]
    return found


def test_the_stylesheet_comes_gzipped_with_a_year_long_cache(page):
    responses = responses_while(page, lambda: page.goto("/auth/login"))
    headers = stylesheet(responses).all_headers()

    assert headers["content-encoding"] == "gzip"
    max_age = int(re.search(r"max-age=(\d+)", headers["cache-control"]).group(1))
    assert max_age >= 365 * 24 * 3600 and "immutable" in headers["cache-control"]


def test_the_page_itself_comes_gzipped(page):
    responses = responses_while(page, lambda: page.goto("/auth/login"))

    assert responses["/auth/login"].all_headers()["content-encoding"] == "gzip"


def test_the_next_page_takes_the_stylesheet_from_the_cache(page):
    page.goto("/auth/login")

    page.goto("/auth/register")

    # transferSize 0: the browser used its copy without a request (a revalidation would cost a few hundred bytes).
    sizes = page.evaluate("""() => performance.getEntriesByType("resource")
        .filter((e) => e.name.includes("/static/authsite.")).map((e) => e.transferSize)""")
    assert sizes == [0]
