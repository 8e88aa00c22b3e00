"""Guards: who may see a page, and what everyone else gets instead."""

from urllib.parse import parse_qs, urlsplit

import pytest
from fastapi import Depends
from fastapi.responses import HTMLResponse
from sqlmodel import select

from authsite import create_app, guards
from authsite.models import User
from support import csrf_from, log_in


@pytest.fixture
def app(settings):
    """The standalone site plus a few pages of the importing app's own, each behind one guard."""
    app = create_app(settings)

    def page(text):
        return lambda: HTMLResponse(f"<p>{text}</p>")

    app.get("/private", dependencies=[Depends(guards.logged_in)])(page("private page"))
    app.get("/reports", dependencies=[Depends(guards.require("reports"))])(page("reports page"))
    app.get("/billing-reports", dependencies=[Depends(guards.require("reports", "billing"))])(page("billing page"))
    app.get("/admin-only", dependencies=[Depends(guards.admin_user)])(page("admin page"))
    app.get("/super-only", dependencies=[Depends(guards.super_user)])(page("super page"))
    app.get("/api/private", dependencies=[Depends(guards.logged_in)])(lambda: {"secret": "private data"})
    app.get("/api/reports", dependencies=[Depends(guards.require("reports"))])(lambda: {"secret": "reports data"})
    return app


def log_in_with_scopes(client, make_user, *scopes):
    make_user(scopes=("authenticated", *scopes))
    assert log_in(client).status_code == 303
    return client


def set_scopes(run_db, username, scopes):
    async def update(db):
        user = (await db.exec(select(User).where(User.username == username))).one()
        user.scopes = list(scopes)
        db.add(user)
        await db.commit()

    run_db(update)


def test_anonymous_visitor_is_sent_to_login_with_the_page_as_next(client):
    response = client.get("/private")

    assert response.status_code == 303
    location = urlsplit(response.headers["location"])
    assert location.path == "/auth/login"
    assert parse_qs(location.query)["next"] == ["/private"]


def test_next_keeps_the_query_string_url_encoded(client):
    response = client.get("/reports?year=2024&q=a%20b")

    location = urlsplit(response.headers["location"])
    # Encoded as one value: the "&" of the original query must not split the login URL's query.
    assert "&" not in location.query
    assert parse_qs(location.query) == {"next": ["/reports?year=2024&q=a%20b"]}


def test_logging_in_from_the_redirect_lands_on_the_page_first_asked_for(client, make_user):
    make_user(scopes=("authenticated", "reports"))
    login_page = client.get(client.get("/reports?year=2024").headers["location"])
    assert 'name="next" value="/reports?year=2024"' in login_page.text

    response = client.post(
        "/auth/login",
        data={
            "username": "alice",
            "password": "correct horse battery",
            "next": "/reports?year=2024",
            "csrf_token": csrf_from(login_page.text),
        },
    )

    assert response.status_code == 303
    assert response.headers["location"] == "/reports?year=2024"
    assert client.get(response.headers["location"]).text == "<p>reports page</p>"


def test_logged_in_user_sees_a_page_that_only_needs_a_login(logged_in_client):
    response = logged_in_client.get("/private")

    assert response.status_code == 200
    assert "private page" in response.text


def test_user_without_the_scope_gets_403_naming_the_missing_permission(client, make_user):
    log_in_with_scopes(client, make_user)

    response = client.get("/reports")

    assert response.status_code == 403
    assert "reports" in response.text
    assert "reports page" not in response.text


def test_user_with_the_scope_sees_the_page(client, make_user):
    log_in_with_scopes(client, make_user, "reports")

    response = client.get("/reports")

    assert response.status_code == 200
    assert "reports page" in response.text


def test_require_with_two_scopes_needs_both(client, make_user):
    log_in_with_scopes(client, make_user, "reports")

    response = client.get("/billing-reports")

    assert response.status_code == 403
    assert "billing" in response.text
    assert "billing page" not in response.text


def test_require_with_two_scopes_admits_a_user_with_both(client, make_user):
    log_in_with_scopes(client, make_user, "reports", "billing")

    assert client.get("/billing-reports").text == "<p>billing page</p>"


# The original design demanded admin AND super by mistake: either one is enough.
@pytest.mark.parametrize("scopes", [("admin",), ("super",), ("admin", "super")])
def test_admin_pages_admit_admin_or_super(client, make_user, scopes):
    log_in_with_scopes(client, make_user, *scopes)

    response = client.get("/admin-only")

    assert response.status_code == 200
    assert "admin page" in response.text


def test_admin_pages_refuse_a_user_with_neither_admin_nor_super(client, make_user):
    log_in_with_scopes(client, make_user, "reports")

    response = client.get("/admin-only")

    assert response.status_code == 403
    assert "admin" in response.text
    assert "admin page" not in response.text


def test_super_pages_admit_super(client, make_user):
    log_in_with_scopes(client, make_user, "super")

    assert client.get("/super-only").text == "<p>super page</p>"


def test_super_pages_refuse_an_admin(client, make_user):
    log_in_with_scopes(client, make_user, "admin")

    response = client.get("/super-only")

    assert response.status_code == 403
    assert "super" in response.text
    assert "super page" not in response.text


def test_anonymous_api_call_gets_401_json_not_a_redirect(client):
    response = client.get("/api/private")

    assert response.status_code == 401
    assert "location" not in response.headers
    assert response.headers["content-type"].startswith("application/json")
    assert response.json()["detail"]


def test_api_call_without_the_scope_gets_403_json(client, make_user):
    log_in_with_scopes(client, make_user)

    response = client.get("/api/reports")

    assert response.status_code == 403
    assert response.headers["content-type"].startswith("application/json")
    assert "reports" in response.json()["detail"]


def test_logged_in_api_call_gets_the_data(logged_in_client):
    assert logged_in_client.get("/api/private").json() == {"secret": "private data"}


def test_logged_in_user_is_sent_home_from_the_login_page(logged_in_client):
    response = logged_in_client.get("/auth/login")

    assert response.status_code == 303
    assert response.headers["location"] == "/"


def test_anonymous_visitor_sees_the_login_page(client):
    response = client.get("/auth/login")

    assert response.status_code == 200
    assert 'name="password"' in response.text


def test_a_granted_scope_applies_on_the_very_next_request(client, make_user, run_db):
    log_in_with_scopes(client, make_user)
    assert client.get("/reports").status_code == 403

    set_scopes(run_db, "alice", ["authenticated", "reports"])

    assert client.get("/reports").status_code == 200


def test_a_removed_scope_applies_on_the_very_next_request(client, make_user, run_db):
    log_in_with_scopes(client, make_user, "admin")
    assert client.get("/admin-only").status_code == 200

    set_scopes(run_db, "alice", ["authenticated"])

    assert client.get("/admin-only").status_code == 403
