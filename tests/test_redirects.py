"""`next`: honoured only when it stays on this site (no open redirect)."""

import pytest

from authsite.redirects import safe_next
from support import csrf_from, log_in

LOCAL_PATHS = [
    "/",
    "/a/b?x=1&y=2",
    "/account",
    "/reports?q=a%20b",
    "/caf%C3%A9",
]

# Each of these, in some browser, leaves the site.
FOREIGN_TARGETS = [
    "//evil.com",
    "///evil.com",
    "/\\evil.com",
    "\\\\evil.com",
    "https://evil.com",
    "http:evil.com",
    "javascript:alert(1)",
    "data:text/html,hi",
    "/%2F%2Fevil.com",
    "/%2f%2fevil.com",
    "/%5Cevil.com",
    "/%255Cevil.com",
    "%2F%2Fevil.com",
    "/\t/evil.com",
    "/\n/evil",
    "/\r\n/evil",
    "/%09/evil.com",
    "evil.com",
    " /evil",
    "",
    None,
    "/" + "a" * 10_000,
]


@pytest.mark.parametrize("target", LOCAL_PATHS)
def test_safe_next_keeps_a_local_path_with_its_query(target):
    assert safe_next(target) == target


@pytest.mark.parametrize("target", FOREIGN_TARGETS, ids=repr)
def test_safe_next_refuses_anything_that_could_leave_the_site(target):
    assert safe_next(target) == "/"


def test_safe_next_falls_back_to_the_given_default():
    assert safe_next("//evil.com", fallback="/account") == "/account"


@pytest.mark.parametrize("target", ["//evil.com", "/\\evil.com", "https://evil.com", "/%2F%2Fevil.com"])
def test_login_with_a_foreign_next_redirects_home(client, user, target):
    response = log_in(client, next_path=target)

    assert response.status_code == 303
    assert response.headers["location"] == "/"


def test_login_page_never_puts_a_foreign_next_into_its_form(client):
    page = client.get("/auth/login", params={"next": "//evil.com"}).text

    assert 'name="next" value="/"' in page
    assert "evil.com" not in page


def test_login_page_carries_a_local_next_into_its_form(client, user):
    page = client.get("/auth/login", params={"next": "/account"}).text
    assert 'name="next" value="/account"' in page

    response = client.post(
        "/auth/login",
        data={"username": "alice", "password": "correct horse battery", "next": "/account", "csrf_token": csrf_from(page)},
    )

    assert response.headers["location"] == "/account"
