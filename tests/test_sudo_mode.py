"""Sudo mode: sensitive changes need a session that logged in or confirmed who it is within
AUTHSITE_SUDO_SECONDS; otherwise the browser is sent to /auth/confirm (the API gets 403) and
nothing changes. Confirming restarts the window, for every worker, because it is the row's."""

from datetime import timedelta
from urllib.parse import parse_qs, urlsplit

from fastapi.testclient import TestClient
from sqlalchemy import update
from sqlmodel import select

from authsite import create_app
from authsite.models import Authenticator, Session, User, utcnow
from support import PASSWORD, FormPage, csrf_from, log_in, site_of_its_own, turn_on_totp

HOUR = timedelta(hours=1)


def age_sessions(run_db, by: timedelta = HOUR) -> None:
    """Every session last proved who it is `by` ago (longer than the default 15 minutes)."""

    async def age(db):
        await db.exec(update(Session).values(authenticated_at=utcnow() - by))
        await db.commit()

    run_db(age)


def press(client, action: str, page: str = "/account/security", **fields):
    token = csrf_from(client.get(page).text)
    return client.post(action, data={"csrf_token": token, **fields})


def confirm(client, password=PASSWORD, *, next_path="/account/security", **fields):
    page = client.get(f"/auth/confirm?next={next_path}")
    return client.post("/auth/confirm", data={"csrf_token": csrf_from(page.text), "password": password,
                                              "next": next_path, **fields})


def one(run_db, model):
    async def read(db):
        return list((await db.exec(select(model))).all())

    return run_db(read)


def test_a_fresh_login_may_make_sensitive_changes(logged_in_client):
    assert press(logged_in_client, "/account/security/totp").status_code == 200


def test_past_the_window_setup_is_sent_to_confirm(logged_in_client, run_db):
    age_sessions(run_db)

    response = press(logged_in_client, "/account/security/totp")

    assert (response.status_code, response.headers["location"]) == (303, "/auth/confirm?next=/account/security")


def test_past_the_window_turning_the_app_off_changes_nothing(logged_in_client, clock, run_db):
    turn_on_totp(logged_in_client, clock)
    age_sessions(run_db)

    response = press(logged_in_client, "/account/security/totp/disable")

    assert response.headers["location"].startswith("/auth/confirm?next=")
    assert len(one(run_db, Authenticator)) == 1


def test_past_the_window_ending_other_sessions_changes_nothing(logged_in_client, app, run_db):
    other = TestClient(app, base_url="http://testserver", follow_redirects=False)
    other.portal = logged_in_client.portal
    log_in(other)
    age_sessions(run_db)

    response = press(logged_in_client, "/account/sessions/revoke-others", page="/account")

    assert response.headers["location"] == "/auth/confirm?next=/account"
    assert len(one(run_db, Session)) == 2


def test_logging_out_this_session_needs_no_confirmation(logged_in_client, run_db):
    age_sessions(run_db)
    [mine] = one(run_db, Session)

    response = press(logged_in_client, f"/account/sessions/{mine.id}/revoke", page="/account")

    assert (response.status_code, response.headers["location"]) == (303, "/account")
    assert one(run_db, Session) == []


def test_confirming_with_the_password_returns_to_next_and_restarts_the_window(logged_in_client, run_db):
    age_sessions(run_db)

    response = confirm(logged_in_client)

    assert (response.status_code, response.headers["location"]) == (303, "/account/security")
    [session] = one(run_db, Session)
    assert utcnow() - session.authenticated_at < timedelta(minutes=1)
    assert press(logged_in_client, "/account/security/totp").status_code == 200


def test_a_wrong_password_does_not_confirm(logged_in_client, run_db):
    age_sessions(run_db)

    response = confirm(logged_in_client, "a wrong password here")

    assert response.status_code == 401
    assert FormPage(response.text).error_for("password") == "That is not your password."
    assert press(logged_in_client, "/account/security/totp").status_code == 303


def test_an_account_with_an_app_confirms_with_a_code_too(logged_in_client, clock, run_db):
    app_on = turn_on_totp(logged_in_client, clock)
    age_sessions(run_db)
    page = logged_in_client.get("/auth/confirm?next=/account/security").text
    assert "code" in FormPage(page).inputs

    without = confirm(logged_in_client)
    with_code = confirm(logged_in_client, code=app_on.next_code())

    assert without.status_code == 401
    assert FormPage(without.text).error_for("code") == "Enter the code from your authenticator app."
    assert with_code.status_code == 303


def test_a_wrong_code_does_not_confirm(logged_in_client, clock, run_db):
    turn_on_totp(logged_in_client, clock)
    age_sessions(run_db)

    response = confirm(logged_in_client, code="12345x")

    assert response.status_code == 401
    assert press(logged_in_client, "/account/security/totp/disable").status_code == 303


def test_wrong_confirmations_count_like_failed_logins(make_settings):
    with site_of_its_own(make_settings(login_max_failures=2), "alice") as (client, site):
        log_in(client)
        answers = [confirm(client, "not the password").status_code for _ in range(3)]

    assert answers == [401, 401, 429]


def test_next_is_only_ever_a_local_path(logged_in_client, run_db):
    age_sessions(run_db)

    response = confirm(logged_in_client, next_path="//evil.example/steal")

    assert response.headers["location"] == "/account"


def test_an_email_change_past_the_window_keeps_what_was_typed(logged_in_client, run_db):
    age_sessions(run_db)

    response = press(logged_in_client, "/account/profile", page="/account", first_name="Alice",
                     email="alice@new.example", current_password=PASSWORD)

    target = urlsplit(response.headers["location"])
    assert target.path == "/auth/confirm"
    back = parse_qs(target.query)["next"][0]
    assert PASSWORD not in back
    [user] = one(run_db, User)
    assert (user.email, user.first_name) == (None, None)
    assert confirm(logged_in_client, next_path=back).status_code == 303
    form = FormPage(logged_in_client.get(back).text)
    assert form.inputs["email"]["value"] == "alice@new.example"
    assert form.inputs["first_name"]["value"] == "Alice"


def test_changing_only_the_name_needs_no_confirmation(logged_in_client, run_db):
    age_sessions(run_db)

    response = press(logged_in_client, "/account/profile", page="/account", first_name="Alice", email="")

    assert response.headers["location"] == "/account"
    assert one(run_db, User)[0].first_name == "Alice"


def test_an_admin_change_past_the_window_is_sent_to_confirm(client, make_user, run_db):
    make_user("root", scopes=("authenticated", "super"))
    bob = make_user("bob")
    log_in(client, "root")
    age_sessions(run_db)

    response = press(client, f"/admin/users/{bob.id}", page=f"/admin/users/{bob.id}", scopes="reports")
    link = press(client, f"/admin/users/{bob.id}/reset-link", page=f"/admin/users/{bob.id}")

    assert response.headers["location"] == f"/auth/confirm?next=/admin/users/{bob.id}"
    assert link.headers["location"] == f"/auth/confirm?next=/admin/users/{bob.id}"
    assert [u.scopes for u in one(run_db, User) if u.username == "bob"] == [["authenticated"]]


def test_the_api_answers_403_reauthentication_required(logged_in_client, run_db):
    age_sessions(run_db)
    token = csrf_from(logged_in_client.get("/account/security").text)

    response = logged_in_client.post("/account/security/totp", data={"csrf_token": token},
                                     headers={"accept": "application/json"})

    assert response.status_code == 403
    assert response.json() == {"detail": "reauthentication required"}


def test_the_api_confirms_with_the_password(logged_in_client, run_db):
    age_sessions(run_db)

    wrong = logged_in_client.post("/api/auth/confirm", json={"password": "not it at all"})
    right = logged_in_client.post("/api/auth/confirm", json={"password": PASSWORD})

    assert wrong.status_code == 401
    assert right.status_code == 204
    assert press(logged_in_client, "/account/security/totp").status_code == 200


def test_the_window_holds_across_workers(logged_in_client, make_settings, run_db):
    """Sudo is the session row's: another process on the same database sees the confirmation."""
    age_sessions(run_db)
    confirm(logged_in_client)
    second_worker = create_app(make_settings())
    with TestClient(second_worker, base_url="http://testserver", follow_redirects=False) as elsewhere:
        elsewhere.cookies = logged_in_client.cookies
        page = elsewhere.get("/account/security").text
        response = elsewhere.post("/account/security/totp", data={"csrf_token": csrf_from(page)})

    assert response.status_code == 200
    assert "Set up an authenticator app" in response.text



def test_confirming_gives_the_session_a_new_token_and_the_old_one_stops(logged_in_client, app, run_db):
    age_sessions(run_db)
    old = logged_in_client.cookies["session"]

    response = confirm(logged_in_client)

    new = response.cookies["session"]
    assert new and new != old
    copied = TestClient(app, base_url="http://testserver", follow_redirects=False)
    copied.portal = logged_in_client.portal
    copied.cookies.set("session", old)
    assert copied.get("/api/me").status_code == 401
    assert logged_in_client.get("/api/me").status_code == 200
    assert len(one(run_db, Session)) == 1


def test_a_password_change_does_not_stand_in_for_the_second_factor(logged_in_client, clock, run_db):
    """Someone with Alice's session and her password (a browser that fills it in), but not her phone:
    changing the password must not give them the sudo mode /auth/confirm refuses them without a code."""
    turn_on_totp(logged_in_client, clock)
    age_sessions(run_db)
    assert confirm(logged_in_client).status_code == 401
    new_password = "another long passphrase 42"
    changed = press(logged_in_client, "/account/password", page="/account", current_password=PASSWORD,
                    new_password=new_password, new_password_confirm=new_password)
    assert changed.status_code == 303

    response = press(logged_in_client, "/account/security/totp/disable")

    assert response.headers["location"].startswith("/auth/confirm")
    assert len(one(run_db, Authenticator)) == 1


def test_an_admin_ending_a_users_sessions_past_the_window_is_sent_to_confirm(client, app, make_user, run_db):
    make_user("root", scopes=("authenticated", "super"))
    bob = make_user("bob")
    bobs_browser = TestClient(app, base_url="http://testserver", follow_redirects=False)
    bobs_browser.portal = client.portal
    log_in(bobs_browser, "bob")
    log_in(client, "root")
    age_sessions(run_db)

    response = press(client, f"/admin/users/{bob.id}/revoke-sessions", page=f"/admin/users/{bob.id}")

    assert response.headers["location"] == f"/auth/confirm?next=/admin/users/{bob.id}"
    assert bobs_browser.get("/api/me").status_code == 200


def test_a_session_ended_during_a_sensitive_request_is_sent_to_log_in_not_to_confirm(logged_in_client, site, run_db):
    # Another request (the account deactivated, "sign out everywhere") ended the session after this
    # request's lookup and before its sudo check: that is a logout, not a question of confirming.
    from types import SimpleNamespace

    import pytest

    from authsite.errors import NotLoggedIn
    from authsite.middleware import SESSION_SCOPE_KEY
    from authsite.web.deps import require_sudo

    [mine] = one(run_db, Session)

    async def end(db):
        await db.delete(await db.get(Session, mine.id))
        await db.commit()

    run_db(end)
    request = SimpleNamespace(scope={SESSION_SCOPE_KEY: SimpleNamespace(id=mine.id)})

    with pytest.raises(NotLoggedIn):
        logged_in_client.portal.call(lambda: require_sudo(site, request, next_path="/account"))
