"""CSRF: a state-changing request must carry this visitor's token and come from this site."""

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func
from sqlmodel import select

from authsite.models import Session
from support import PASSWORD, form_token, log_in

FOREIGN_ORIGIN = "https://evil.example"


@pytest.fixture
def other_visitor(app, client) -> TestClient:
    """A second browser on the same running site: its own cookies, the same app and event loop
    (sharing the portal, so the app is not started a second time)."""
    other = TestClient(app, base_url="http://testserver", follow_redirects=False)
    other.portal = client.portal
    return other


def count_sessions(run_db) -> int:
    async def count(db):
        return (await db.exec(select(func.count()).select_from(Session))).one()

    return run_db(count)


def login_form(token, **extra):
    return {"username": "alice", "password": PASSWORD, "csrf_token": token, **extra}


def is_logged_in(client) -> bool:
    return client.get("/api/me").status_code == 200


def logout_token(client) -> str:
    return form_token(client, "/auth/logout")


# The token


def test_login_without_a_token_is_refused_and_starts_no_session(client, user, run_db):
    client.get("/auth/login")

    response = client.post("/auth/login", data={"username": "alice", "password": PASSWORD})

    assert response.status_code == 403
    assert "session" not in response.cookies
    assert count_sessions(run_db) == 0
    assert not is_logged_in(client)


def test_login_with_a_forged_token_is_refused(client, user, run_db):
    client.get("/auth/login")

    response = client.post("/auth/login", data=login_form("abc.def"))

    assert response.status_code == 403
    assert count_sessions(run_db) == 0


def test_logout_without_a_token_is_refused_and_the_session_stays(logged_in_client, run_db):
    response = logged_in_client.post("/auth/logout", data={"submit": "Log out"})

    assert response.status_code == 403
    assert is_logged_in(logged_in_client)
    assert count_sessions(run_db) == 1


def test_a_token_issued_to_another_visitor_is_refused(client, other_visitor, user, run_db):
    client.get("/auth/login")  # our visitor has a CSRF cookie of their own
    their_token = form_token(other_visitor)

    response = client.post("/auth/login", data=login_form(their_token))

    assert response.status_code == 403
    assert count_sessions(run_db) == 0


def test_a_logged_in_users_token_does_not_work_for_another_user(logged_in_client, other_visitor, make_user):
    make_user("bob")
    assert log_in(other_visitor, "bob").status_code == 303
    bobs_token = logout_token(other_visitor)

    response = logged_in_client.post("/auth/logout", data={"csrf_token": bobs_token})

    assert response.status_code == 403
    assert is_logged_in(logged_in_client)


def test_the_pre_login_token_stops_working_after_login(client, user):
    pre_login_token = form_token(client)
    assert client.post("/auth/login", data=login_form(pre_login_token)).status_code == 303

    response = client.post("/auth/logout", data={"csrf_token": pre_login_token})

    assert response.status_code == 403
    assert is_logged_in(client)


def test_after_login_forms_carry_a_session_bound_token_that_works(client, user):
    log_in(client)

    response = client.post("/auth/logout", data={"csrf_token": logout_token(client)})

    assert response.status_code == 303
    assert not is_logged_in(client)


def test_a_token_from_an_ended_session_does_not_work_in_the_next_one(client, user):
    log_in(client)
    old_token = logout_token(client)
    client.post("/auth/logout", data={"csrf_token": old_token})
    log_in(client)

    response = client.post("/auth/logout", data={"csrf_token": old_token})

    assert response.status_code == 403
    assert is_logged_in(client)


# Where the request came from


@pytest.mark.parametrize("fetch_site", ["cross-site", "same-site"])
def test_login_from_another_site_is_refused_even_with_a_valid_token(client, user, run_db, fetch_site):
    token = form_token(client)

    response = client.post("/auth/login", data=login_form(token), headers={"sec-fetch-site": fetch_site})

    assert response.status_code == 403
    assert count_sessions(run_db) == 0


@pytest.mark.parametrize("fetch_site", ["same-origin", "none"])
def test_login_from_this_site_or_typed_by_the_user_passes(client, user, fetch_site):
    token = form_token(client)

    response = client.post("/auth/login", data=login_form(token), headers={"sec-fetch-site": fetch_site})

    assert response.status_code == 303
    assert is_logged_in(client)


def test_logout_from_another_site_is_refused(logged_in_client):
    token = logout_token(logged_in_client)

    response = logged_in_client.post(
        "/auth/logout", data={"csrf_token": token}, headers={"sec-fetch-site": "cross-site"}
    )

    assert response.status_code == 403
    assert is_logged_in(logged_in_client)


CROSS_SITE = [{"sec-fetch-site": "cross-site"}, {"sec-fetch-site": "same-site"}, {"origin": FOREIGN_ORIGIN}]


def session_cookies_set(response) -> list[str]:
    """The Set-Cookie lines of a response that write (or delete) the session cookie."""
    return [line for line in response.headers.get_list("set-cookie") if line.split("=")[0].endswith("session")]


@pytest.mark.parametrize("headers", CROSS_SITE, ids=["cross-site", "same-site", "foreign-origin"])
def test_a_cross_site_logout_leaves_the_session_alive(logged_in_client, other_visitor, run_db, headers):
    # The forged POST arrives without the victim's SameSite=Lax cookie: it looks anonymous.
    response = other_visitor.post("/auth/logout", data={"submit": "Log out"}, headers=headers)

    assert response.status_code == 403
    assert "set-cookie" not in response.headers
    assert is_logged_in(logged_in_client)
    assert count_sessions(run_db) == 1


def test_a_logout_that_proves_nothing_clears_no_cookie(client):
    # No session and no token: nothing says this came from the browser whose cookie it would clear.
    response = client.post("/auth/logout")

    assert response.status_code == 303
    assert session_cookies_set(response) == []


def test_an_api_logout_without_a_session_clears_no_cookie(client):
    response = client.post("/api/auth/logout", json={})

    assert response.status_code == 204
    assert session_cookies_set(response) == []


def test_a_real_logout_still_clears_the_cookie(logged_in_client):
    response = logged_in_client.post("/auth/logout", data={"csrf_token": logout_token(logged_in_client)})

    assert response.status_code == 303
    assert len(session_cookies_set(response)) == 1
    assert not is_logged_in(logged_in_client)


@pytest.mark.parametrize(
    "origin",
    [FOREIGN_ORIGIN, "null", "http://testserver.evil.example", "http://testserver:8080", "http://testserver@evil.example", "http://[bad"],
)
def test_login_with_a_foreign_or_null_origin_is_refused(client, user, run_db, origin):
    token = form_token(client)

    response = client.post("/auth/login", data=login_form(token), headers={"origin": origin})

    assert response.status_code == 403
    assert count_sessions(run_db) == 0


def test_a_foreign_origin_is_refused_even_when_sec_fetch_site_claims_same_origin(client, user, run_db):
    token = form_token(client)

    response = client.post(
        "/auth/login", data=login_form(token), headers={"sec-fetch-site": "same-origin", "origin": FOREIGN_ORIGIN}
    )

    assert response.status_code == 403
    assert count_sessions(run_db) == 0


def test_login_with_our_own_origin_passes(client, user):
    token = form_token(client)

    response = client.post("/auth/login", data=login_form(token), headers={"origin": "http://testserver"})

    assert response.status_code == 303


def test_a_request_with_neither_header_is_judged_by_the_token_alone(client, user):
    token = form_token(client)

    response = client.post("/auth/login", data=login_form(token))

    assert "origin" not in response.request.headers
    assert "sec-fetch-site" not in response.request.headers
    assert response.status_code == 303


def test_a_request_with_neither_header_and_no_token_is_refused(client, user):
    client.get("/auth/login")

    response = client.post("/auth/login", data={"username": "alice", "password": PASSWORD})

    assert response.status_code == 403


# The JSON API (no token: the JSON content type and the origin stand in for it)


@pytest.mark.parametrize(
    "headers",
    [{"origin": FOREIGN_ORIGIN}, {"origin": "null"}, {"sec-fetch-site": "cross-site"}],
    ids=["foreign-origin", "null-origin", "cross-site"],
)
def test_api_login_from_another_origin_is_refused(client, user, run_db, headers):
    response = client.post("/api/auth/login", json={"username": "alice", "password": PASSWORD}, headers=headers)

    assert response.status_code == 403
    assert response.headers["content-type"].startswith("application/json")
    assert count_sessions(run_db) == 0


def test_api_logout_from_another_origin_is_refused(client, user):
    client.post("/api/auth/login", json={"username": "alice", "password": PASSWORD})

    response = client.post("/api/auth/logout", json={}, headers={"origin": FOREIGN_ORIGIN})

    assert response.status_code == 403
    assert is_logged_in(client)


def test_api_login_from_our_own_origin_passes(client, user):
    response = client.post(
        "/api/auth/login",
        json={"username": "alice", "password": PASSWORD},
        headers={"origin": "http://testserver", "sec-fetch-site": "same-origin"},
    )

    assert response.status_code == 200
