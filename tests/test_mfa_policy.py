"""AUTHSITE_MFA_REQUIRED_SCOPES holds admins without a second factor at the security page; admins
see who has one; a super, or the operator with `run.py mfa-reset`, removes a lost one."""


import pytest
from fastapi import Depends
from fastapi.testclient import TestClient
from sqlmodel import select

from authsite import create_app, guards
from authsite.models import Authenticator, RecoveryCode, Session, User
from support import csrf_from, log_in, second_step, site_of_its_own, turn_on_totp

ADMIN = ("authenticated", "admin")


@pytest.fixture
def settings(make_settings):
    return make_settings(mfa_required_scopes="admin,super")


@pytest.fixture
def app(settings):
    app = create_app(settings)

    @app.get("/reports", dependencies=[Depends(guards.require("admin"))])
    async def reports():  # the host app's own page, behind authsite's guard
        return {"reports": []}

    return app


def rows(run_db, model):
    async def read(db):
        return list((await db.exec(select(model))).all())

    return run_db(read)


def press(client, action: str, page: str):
    return client.post(action, data={"csrf_token": csrf_from(client.get(page).text)})


@pytest.mark.parametrize("path", ["/", "/account", "/admin/users", "/reports"])
def test_an_admin_without_a_second_factor_is_held_at_the_security_page(client, make_user, path):
    make_user("ada", scopes=ADMIN)
    log_in(client, "ada")

    response = client.get(path)

    assert (response.status_code, response.headers["location"]) == (303, "/account/security")


def test_the_security_page_says_why_they_are_held(client, make_user):
    make_user("ada", scopes=ADMIN)
    log_in(client, "ada")

    page = client.get("/account/security", follow_redirects=True).text

    assert "Your permissions (admin) need a second factor." in page


def test_the_api_answers_403_second_factor_required(client, make_user):
    make_user("ada", scopes=ADMIN)
    log_in(client, "ada")

    response = client.get("/api/me")

    assert response.status_code == 403
    assert response.json() == {"detail": "second factor required"}


def test_a_held_admin_can_still_log_out(client, make_user):
    make_user("ada", scopes=ADMIN)
    log_in(client, "ada")

    response = press(client, "/auth/logout", "/account/security")

    assert response.headers["location"] == "/"
    assert client.get("/api/me").status_code == 401


def test_once_they_add_one_they_go_on(client, make_user, clock):
    make_user("ada", scopes=ADMIN)
    log_in(client, "ada")

    turn_on_totp(client, clock)

    assert client.get("/admin/users").status_code == 200
    assert client.get("/reports").json() == {"reports": []}


def test_users_without_such_a_scope_are_not_held(client, make_user):
    make_user("bob")
    log_in(client, "bob")

    assert client.get("/account").status_code == 200


def test_the_last_second_factor_of_a_required_scope_cannot_be_turned_off(client, make_user, clock, run_db):
    make_user("ada", scopes=ADMIN)
    log_in(client, "ada")
    turn_on_totp(client, clock)

    response = press(client, "/account/security/totp/disable", "/account/security")

    assert response.status_code == 409
    assert "need a second factor" in response.text
    assert len(rows(run_db, Authenticator)) == 1


# Admins: who has a second factor, and removing a lost one


@pytest.fixture
def root(client, make_user, clock):
    """A super user, with an authenticator app (the site requires one), logged in."""
    make_user("root", scopes=("authenticated", "super"))
    log_in(client, "root")
    return turn_on_totp(client, clock)


@pytest.fixture
def bob_with_app(app, client, make_user, clock):
    bob = make_user("bob")
    phone = TestClient(app, base_url="http://testserver", follow_redirects=False)
    phone.portal = client.portal
    log_in(phone, "bob")
    turn_on_totp(phone, clock)
    return bob, phone


def test_the_user_list_shows_each_users_second_factor(client, root, bob_with_app, make_user):
    make_user("carol")

    page = client.get("/admin/users").text
    rows_by_name = {name: page.split(f">{name}</a>")[1].split("</tr>")[0] for name in ("bob", "carol")}

    assert "Authenticator app" in rows_by_name["bob"]
    assert "Authenticator app" not in rows_by_name["carol"]


def test_the_user_page_shows_factors_but_never_a_secret(client, root, bob_with_app, run_db):
    bob, _ = bob_with_app
    page = client.get(f"/admin/users/{bob.id}").text
    [sealed] = [row.secret_sealed for row in rows(run_db, Authenticator) if row.user_id == bob.id]

    assert "Authenticator app (since" in page and "10 recovery codes left" in page
    assert sealed not in page


def test_a_super_removes_a_users_second_factors_and_ends_their_sessions(client, root, bob_with_app, run_db):
    bob, phone = bob_with_app

    response = press(client, f"/admin/users/{bob.id}/mfa-reset", f"/admin/users/{bob.id}")

    assert response.headers["location"] == f"/admin/users/{bob.id}"
    assert all(row.user_id != bob.id for row in rows(run_db, Authenticator))
    assert all(row.user_id != bob.id for row in rows(run_db, RecoveryCode))
    assert all(row.user_id != bob.id for row in rows(run_db, Session))
    assert phone.get("/api/me").status_code == 401
    assert log_in(phone, "bob").headers["location"] == "/"  # the password alone now


def test_a_plain_admin_may_not_remove_second_factors(app, client, make_user, clock, bob_with_app, run_db):
    bob, _ = bob_with_app
    make_user("ada", scopes=ADMIN)
    admin = TestClient(app, base_url="http://testserver", follow_redirects=False)
    admin.portal = client.portal
    log_in(admin, "ada")
    turn_on_totp(admin, clock)

    response = press(admin, f"/admin/users/{bob.id}/mfa-reset", f"/admin/users/{bob.id}")

    assert response.status_code == 403
    assert any(row.user_id == bob.id for row in rows(run_db, Authenticator))


def test_mfa_reset_from_the_shell_removes_factors_and_ends_sessions(run_cli, client, bob_with_app, run_db):
    bob, phone = bob_with_app

    result = run_cli("mfa-reset", "bob")

    assert result.returncode == 0, result.stderr
    assert "removed every second factor of 'bob'" in result.stdout
    assert rows(run_db, Authenticator) == [] and rows(run_db, RecoveryCode) == []
    assert phone.get("/api/me").status_code == 401
    [user] = [u for u in rows(run_db, User) if u.username == "bob"]
    assert user.mfa_enabled is False


def test_mfa_reset_of_an_unknown_user_fails_in_one_line(run_cli):
    result = run_cli("mfa-reset", "nobody")

    assert result.returncode == 1
    assert result.stderr.strip() == "authsite: no user named 'nobody'"


def test_a_recovery_code_gets_an_admin_past_the_second_step(client, make_user, clock):
    make_user("ada", scopes=ADMIN)
    log_in(client, "ada")
    phone = turn_on_totp(client, clock)
    press(client, "/auth/logout", "/account/security")

    log_in(client, "ada")

    assert second_step(client, phone.recovery_codes[3]).status_code == 303
    assert client.get("/admin/users").status_code == 200


def test_requiring_authenticated_holds_every_user_until_they_add_one(make_settings):
    with site_of_its_own(make_settings(mfa_required_scopes="authenticated"), "bob") as (client, site):
        log_in(client, "bob")
        held = client.get("/account")
        turn_on_totp(client, site.factors.clock)
        free = client.get("/account")

    assert held.headers["location"] == "/account/security"
    assert free.status_code == 200
