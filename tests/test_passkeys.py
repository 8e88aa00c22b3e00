"""Passkeys on the server: adding one (sudo mode), signing in with it alone, using it as the
second step and to confirm, removing it; and the attacks the spec names: another origin, a replayed
answer, a challenge from another browser or too old, an unverified user, a copied authenticator.
A software passkey (tests/soft_passkey.py) plays the authenticator, on both databases."""

from datetime import timedelta

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import update
from sqlmodel import select

from authsite.events import Kind
from authsite.models import AuthEvent, Passkey, RecoveryCode, Session, User, utcnow
from soft_passkey import SoftPasskey
from support import PASSWORD, FormPage, csrf_from, log_in, turn_on_totp

BASE_URL = "http://localhost"


@pytest.fixture
def settings(make_settings):
    # A host name, not an IP: a relying party id cannot be an address.
    return make_settings(base_url=BASE_URL)


@pytest.fixture
def browser(app, client) -> TestClient:
    return client


def another_browser(app, client) -> TestClient:
    other = TestClient(app, base_url="http://testserver", follow_redirects=False)
    other.portal = client.portal
    return other


def rows(run_db, model):
    async def read(db):
        return list((await db.exec(select(model))).all())

    return run_db(read)


def options(client, path="/api/auth/passkey/options") -> dict:
    response = client.post(path, json={})
    assert response.status_code == 200, response.text
    return response.json()["publicKey"]


def add_passkey(client, device: SoftPasskey, *, name="Laptop"):
    """Press "Add a passkey" on the security page, as the page's script does."""
    page = client.get("/account/security").text
    credential = device.create(options(client, "/api/account/passkeys/options"))
    return client.post("/account/security/passkeys", data={
        "csrf_token": csrf_from(page), "name": name, "credential": _json(credential),
    })


def sign_in(client, device: SoftPasskey, *, next_path="/", **answer):
    """Press "Sign in with a passkey" on the login page."""
    page = client.get("/auth/login").text
    credential = device.get(options(client), **answer)
    return client.post("/auth/passkey", data={
        "csrf_token": csrf_from(page), "next": next_path, "credential": _json(credential),
    })


def _json(credential: dict) -> str:
    import json

    return json.dumps(credential)


def is_logged_in(client) -> bool:
    return client.get("/api/me").status_code == 200


@pytest.fixture
def device():
    return SoftPasskey(origin=BASE_URL)


@pytest.fixture
def alice_with_passkey(client, user, device, app):
    """alice added a passkey, then logged out: a fresh browser is at the login page."""
    log_in(client)
    assert add_passkey(client, device).status_code == 200
    fresh = another_browser(app, client)
    return fresh


# Adding one


def test_the_first_passkey_is_listed_and_brings_ten_recovery_codes(logged_in_client, device, run_db):
    response = add_passkey(logged_in_client, device, name="My laptop")

    assert response.status_code == 200
    assert response.text.count('class="recovery-code"') == 10
    security = logged_in_client.get("/account/security").text
    assert "My laptop" in security and "Never" in security
    [passkey] = rows(run_db, Passkey)
    assert passkey.credential_id == device.id
    [alice] = rows(run_db, User)
    assert alice.mfa_enabled


def test_a_second_passkey_keeps_the_recovery_codes(logged_in_client, run_db):
    add_passkey(logged_in_client, SoftPasskey(origin=BASE_URL))
    codes_before = {row.code_hash for row in rows(run_db, RecoveryCode)}

    response = add_passkey(logged_in_client, SoftPasskey(origin=BASE_URL), name="Phone")

    assert (response.status_code, response.headers["location"]) == (303, "/account/security")
    assert {row.code_hash for row in rows(run_db, RecoveryCode)} == codes_before
    assert len(rows(run_db, Passkey)) == 2


def test_an_unnamed_passkey_is_named_after_the_browser(logged_in_client, device, run_db):
    logged_in_client.headers["user-agent"] = (
        "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0"
    )
    add_passkey(logged_in_client, device, name="  ")

    [passkey] = rows(run_db, Passkey)
    assert passkey.name == "Passkey on Firefox on Linux"


def test_adding_a_passkey_needs_sudo_mode(logged_in_client, device, run_db):
    async def age(db):
        await db.exec(update(Session).values(authenticated_at=utcnow() - timedelta(hours=1)))
        await db.commit()

    run_db(age)

    api = logged_in_client.post("/api/account/passkeys/options", json={})
    page = logged_in_client.post("/account/security/passkeys", data={
        "csrf_token": csrf_from(logged_in_client.get("/account/security").text), "credential": "{}",
    })

    assert (api.status_code, api.json()) == (403, {"detail": "reauthentication required"})
    assert (page.status_code, page.headers["location"]) == (303, "/auth/confirm?next=/account/security")
    assert rows(run_db, Passkey) == []


def test_a_passkey_made_for_another_origin_is_refused(logged_in_client, device, run_db):
    page = logged_in_client.get("/account/security").text
    credential = device.create(options(logged_in_client, "/api/account/passkeys/options"),
                               origin="http://localhost.evil.example")

    response = logged_in_client.post("/account/security/passkeys", data={
        "csrf_token": csrf_from(page), "credential": _json(credential),
    })

    assert response.status_code == 400
    assert "could not be checked" in response.text
    assert rows(run_db, Passkey) == []


def test_a_passkey_without_user_verification_is_refused(logged_in_client, device, run_db):
    page = logged_in_client.get("/account/security").text
    credential = device.create(options(logged_in_client, "/api/account/passkeys/options"), verified=False)

    response = logged_in_client.post("/account/security/passkeys", data={
        "csrf_token": csrf_from(page), "credential": _json(credential),
    })

    assert response.status_code == 400
    assert rows(run_db, Passkey) == []


def test_a_creation_challenge_works_in_its_own_session_only(app, client, make_user, device, run_db):
    make_user("alice")
    make_user("mallory")
    log_in(client, "mallory")
    stolen = options(client, "/api/account/passkeys/options")
    cookie = client.cookies.get("passkey_challenge")
    victim = another_browser(app, client)
    log_in(victim)
    victim.cookies.set("passkey_challenge", cookie)

    response = victim.post("/account/security/passkeys", data={
        "csrf_token": csrf_from(victim.get("/account/security").text), "credential": _json(device.create(stolen)),
    })

    assert response.status_code == 400
    assert rows(run_db, Passkey) == []


# Signing in with it


def test_a_passkey_signs_in_without_a_password(alice_with_passkey, device, run_db):
    response = sign_in(alice_with_passkey, device, next_path="/account")

    assert (response.status_code, response.headers["location"]) == (303, "/account")
    assert is_logged_in(alice_with_passkey)
    login = [event for event in rows(run_db, AuthEvent) if event.kind == Kind.LOGIN][-1]
    assert login.detail.get("factor") == "passkey"
    [passkey] = rows(run_db, Passkey)
    assert passkey.last_used_at is not None and passkey.sign_count == device.sign_count


def test_a_passkey_login_skips_the_second_step_for_an_account_with_an_app(client, user, device, clock, app):
    log_in(client)
    turn_on_totp(client, clock)
    add_passkey(client, device)
    fresh = another_browser(app, client)

    response = sign_in(fresh, device)

    assert (response.status_code, response.headers["location"]) == (303, "/")
    assert is_logged_in(fresh)


def test_the_api_signs_in_with_a_passkey(alice_with_passkey, device):
    credential = device.get(options(alice_with_passkey))

    response = alice_with_passkey.post("/api/auth/passkey/verify", json={"credential": credential})

    assert response.status_code == 200
    assert response.json()["user"]["username"] == "alice"
    assert is_logged_in(alice_with_passkey)


def test_an_answer_for_another_origin_is_refused(alice_with_passkey, device, run_db):
    response = sign_in(alice_with_passkey, device, origin="http://localhost.evil.example")

    assert response.status_code == 401
    assert "That passkey was not accepted" in response.text
    assert not is_logged_in(alice_with_passkey)
    failed = [event for event in rows(run_db, AuthEvent) if event.kind == Kind.LOGIN_FAILED]
    assert failed and failed[-1].user_id is not None


def test_an_answer_for_another_relying_party_is_refused(alice_with_passkey, device):
    response = sign_in(alice_with_passkey, device, rp_id="evil.example")

    assert response.status_code == 401


def test_an_answer_without_user_verification_is_refused(alice_with_passkey, device):
    response = sign_in(alice_with_passkey, device, verified=False)

    assert response.status_code == 401
    assert not is_logged_in(alice_with_passkey)


def test_a_replayed_answer_is_refused(alice_with_passkey, device, app, client):
    page = alice_with_passkey.get("/auth/login").text
    credential = _json(device.get(options(alice_with_passkey)))
    form = {"csrf_token": csrf_from(page), "next": "/", "credential": credential}
    challenge = alice_with_passkey.cookies.get("passkey_challenge")
    assert alice_with_passkey.post("/auth/passkey", data=form).status_code == 303

    # The same answer again, with the challenge cookie put back, from a logged-out browser.
    replay = another_browser(app, client)
    replay.cookies.set("passkey_challenge", challenge)
    form["csrf_token"] = csrf_from(replay.get("/auth/login").text)
    response = replay.post("/auth/passkey", data=form)

    assert response.status_code == 401
    assert not is_logged_in(replay)


def test_an_answer_to_another_browsers_challenge_is_refused(alice_with_passkey, device, app, client):
    theirs = options(alice_with_passkey)  # the challenge stays in that browser's cookie
    elsewhere = another_browser(app, client)
    options(elsewhere)

    response = elsewhere.post("/api/auth/passkey/verify", json={"credential": device.get(theirs)})

    assert response.status_code == 401


def test_a_challenge_older_than_five_minutes_is_refused(alice_with_passkey, device, monkeypatch):
    import time

    asked = options(alice_with_passkey)
    later = time.time() + 5 * 60 + 1
    monkeypatch.setattr(time, "time", lambda: later)

    response = alice_with_passkey.post("/api/auth/passkey/verify", json={"credential": device.get(asked)})

    assert response.status_code == 401


def test_an_unknown_passkey_is_refused_and_counted(client, user):
    stranger = SoftPasskey(origin=BASE_URL)
    stranger.rp_id, stranger.user_handle = "localhost", b"nobody"

    response = client.post("/api/auth/passkey/verify", json={"credential": stranger.get(options(client))})

    assert response.status_code == 401


def test_a_deactivated_account_cannot_sign_in_with_its_passkey(alice_with_passkey, device, run_db):
    async def deactivate(db):
        await db.exec(update(User).values(is_active=False))
        await db.commit()

    run_db(deactivate)

    assert sign_in(alice_with_passkey, device).status_code == 401


def test_failed_passkey_answers_count_toward_the_login_limits(make_settings, tmp_path):
    from support import site_of_its_own

    with site_of_its_own(make_settings(base_url=BASE_URL, login_max_failures=2, login_ip_max_failures=1000),
                         "alice") as (client, site):
        device = SoftPasskey(origin=BASE_URL)
        log_in(client)
        add_passkey(client, device)
        client.post("/api/auth/logout")
        statuses = [
            client.post("/api/auth/passkey/verify", json={"credential": device.get(options(client), verified=False)}).status_code
            for _ in range(3)
        ]
        right = client.post("/api/auth/passkey/verify", json={"credential": device.get(options(client))})

    assert statuses == [401, 401, 429]
    assert right.status_code == 429


def test_a_copied_authenticator_is_refused_marked_and_reported(alice_with_passkey, device, run_db):
    twin = device.copy()
    assert sign_in(alice_with_passkey, device).status_code == 303
    alice_with_passkey.post("/api/auth/logout")

    response = sign_in(alice_with_passkey, twin)  # its counter is behind the original's

    assert response.status_code == 401
    [passkey] = rows(run_db, Passkey)
    assert passkey.clone_suspected_at is not None
    assert any(event.kind == Kind.PASSKEY_CLONE_SUSPECTED for event in rows(run_db, AuthEvent))


def test_a_passkey_that_never_counts_may_be_used_again_and_again(client, user, app):
    synced = SoftPasskey(origin=BASE_URL, counts=False)
    log_in(client)
    add_passkey(client, synced)
    fresh = another_browser(app, client)

    assert sign_in(fresh, synced).status_code == 303
    fresh.post("/api/auth/logout")
    assert sign_in(fresh, synced).status_code == 303


# As the second step, and to confirm


def test_a_passkey_answers_the_second_step_after_the_password(alice_with_passkey, device):
    assert log_in(alice_with_passkey).headers["location"] == "/auth/mfa"
    page = alice_with_passkey.get("/auth/mfa").text
    assert "Use a passkey" in page
    credential = device.get(options(alice_with_passkey))

    response = alice_with_passkey.post("/auth/mfa", data={
        "csrf_token": csrf_from(page), "next": "/", "credential": _json(credential),
    })

    assert (response.status_code, response.headers["location"]) == (303, "/")
    assert is_logged_in(alice_with_passkey)


def test_the_api_second_step_takes_a_passkey(alice_with_passkey, device):
    first = alice_with_passkey.post("/api/auth/login", json={"username": "alice", "password": PASSWORD})
    assert first.status_code == 202 and "passkey" in first.json()["methods"]

    response = alice_with_passkey.post("/api/auth/mfa", json={"credential": device.get(options(alice_with_passkey))})

    assert response.status_code == 200


def test_another_accounts_passkey_does_not_answer_the_second_step(alice_with_passkey, make_user, app, client):
    make_user("bob")
    bobs = SoftPasskey(origin=BASE_URL)
    bob = another_browser(app, client)
    log_in(bob, "bob")
    add_passkey(bob, bobs)
    log_in(alice_with_passkey)

    response = alice_with_passkey.post("/api/auth/mfa", json={"credential": bobs.get(options(alice_with_passkey))})

    assert response.status_code == 401
    assert not is_logged_in(alice_with_passkey)


def test_a_passkey_confirms_for_sudo_mode(logged_in_client, device, run_db):
    add_passkey(logged_in_client, device)

    async def age(db):
        await db.exec(update(Session).values(authenticated_at=utcnow() - timedelta(hours=1)))
        await db.commit()

    run_db(age)
    page = logged_in_client.get("/auth/confirm?next=/account/security").text
    assert "Use a passkey" in page

    response = logged_in_client.post("/auth/confirm", data={
        "csrf_token": csrf_from(page), "next": "/account/security",
        "credential": _json(device.get(options(logged_in_client))),
    })

    assert (response.status_code, response.headers["location"]) == (303, "/account/security")
    assert logged_in_client.post("/api/account/passkeys/options", json={}).status_code == 200


# Removing it


def test_removing_a_passkey_stops_it_signing_in(logged_in_client, device, run_db, app, client):
    add_passkey(logged_in_client, device)
    [passkey] = rows(run_db, Passkey)
    page = logged_in_client.get("/account/security").text

    response = logged_in_client.post(f"/account/security/passkeys/{passkey.id}/delete",
                                     data={"csrf_token": csrf_from(page)})

    assert (response.status_code, response.headers["location"]) == (303, "/account/security")
    assert rows(run_db, Passkey) == [] and rows(run_db, RecoveryCode) == []
    assert not rows(run_db, User)[0].mfa_enabled
    assert sign_in(another_browser(app, client), device).status_code == 401


def test_another_users_passkey_cannot_be_removed(client, make_user, app, run_db):
    make_user("alice")
    make_user("bob")
    log_in(client, "bob")
    add_passkey(client, SoftPasskey(origin=BASE_URL))
    [bobs] = rows(run_db, Passkey)
    alice = another_browser(app, client)
    log_in(alice)

    response = alice.post(f"/account/security/passkeys/{bobs.id}/delete",
                          data={"csrf_token": csrf_from(alice.get("/account/security").text)})

    assert response.status_code == 404
    assert len(rows(run_db, Passkey)) == 1


def test_the_last_passkey_of_a_user_who_must_have_a_second_factor_stays(make_settings):
    from support import site_of_its_own

    with site_of_its_own(make_settings(base_url=BASE_URL, mfa_required_scopes="authenticated"), "alice") as (client, site):
        log_in(client)
        add_passkey(client, SoftPasskey(origin=BASE_URL))
        listed = client.get("/api/account/passkeys").json()["passkeys"]

        response = client.delete(f"/api/account/passkeys/{listed[0]['id']}")

        assert response.status_code == 409
        assert "cannot be removed" in response.json()["detail"]
        assert len(client.get("/api/account/passkeys").json()["passkeys"]) == 1


def test_a_user_with_only_a_passkey_is_not_held_by_the_policy(make_settings):
    from support import site_of_its_own

    with site_of_its_own(make_settings(base_url=BASE_URL, mfa_required_scopes="authenticated"), "alice") as (client, site):
        log_in(client)
        assert client.get("/account").headers["location"] == "/account/security"
        add_passkey(client, SoftPasskey(origin=BASE_URL))

        assert client.get("/account").status_code == 200


# A site whose base URL is an IP address


def test_a_site_on_an_ip_address_offers_no_passkeys_and_says_why(make_settings):
    from support import site_of_its_own

    with site_of_its_own(make_settings(base_url="http://127.0.0.1:8000"), "alice") as (client, site):
        log_in(client)
        security = client.get("/account/security").text
        login_page = client.get("/auth/login")

        assert "is an IP address" in security
        assert "Add a passkey" not in security
        assert client.post("/api/auth/passkey/options", json={}).status_code == 404
        assert "passkeys.js" not in login_page.text


# What admins and the API see


def test_the_admin_list_and_page_show_a_users_passkeys(client, make_user, app):
    make_user("root", scopes=("authenticated", "super"))
    make_user("alice")
    alice = another_browser(app, client)
    log_in(alice)
    add_passkey(alice, SoftPasskey(origin=BASE_URL))
    log_in(client, "root")

    listing = client.get("/admin/users").text
    alice_id = alice.get("/api/me").json()["id"]
    page = client.get(f"/admin/users/{alice_id}").text

    assert "1 passkey" in listing
    assert "1 passkey" in page and "Remove second factors" in page


def test_mfa_reset_removes_passkeys_too(client, user, device, run_db, run_cli):
    log_in(client)
    add_passkey(client, device)

    result = run_cli("mfa-reset", "alice")

    assert result.returncode == 0, result.stderr
    assert rows(run_db, Passkey) == [] and rows(run_db, RecoveryCode) == []
    assert not rows(run_db, User)[0].mfa_enabled


def test_the_openapi_document_describes_both_ceremonies(client):
    paths = client.get("/openapi.json").json()["paths"]

    for path in ("/api/auth/passkey/options", "/api/auth/passkey/verify", "/api/account/passkeys/options",
                 "/api/account/passkeys/verify"):
        assert "post" in paths[path], path
    assert "credential" in str(paths["/api/auth/passkey/verify"]["post"]["requestBody"])


@pytest.mark.parametrize("credential", ["not json", "[]", '{"id": 5}', '{"id": "' + "A" * 2000 + '"}',
                                        '{"id": "x", "response": "y"}', "{" * 5000])
def test_a_malformed_answer_is_a_plain_refusal(alice_with_passkey, credential):
    page = alice_with_passkey.get("/auth/login").text
    options(alice_with_passkey)

    response = alice_with_passkey.post("/auth/passkey", data={"csrf_token": csrf_from(page), "credential": credential})

    assert response.status_code == 401
    assert "That passkey was not accepted" in response.text


@pytest.mark.parametrize("body", [{"credential": "text"}, {"credential": {"id": ["a"]}}, {}])
def test_a_malformed_api_answer_gets_a_4xx(alice_with_passkey, body):
    options(alice_with_passkey)

    response = alice_with_passkey.post("/api/auth/passkey/verify", json=body)

    assert response.status_code in (401, 422)


def test_a_malformed_registration_is_refused_with_a_message(logged_in_client, run_db):
    page = logged_in_client.get("/account/security").text
    options(logged_in_client, "/api/account/passkeys/options")

    response = logged_in_client.post("/account/security/passkeys", data={
        "csrf_token": csrf_from(page), "credential": '{"id": "abc", "response": {"attestationObject": "!!"}}',
    })

    assert response.status_code == 400
    assert "could not be checked" in response.text


def test_a_passkey_marked_as_copied_stays_refused_even_when_its_counter_moves_on(alice_with_passkey, device):
    twin = device.copy()
    assert sign_in(alice_with_passkey, device).status_code == 303
    alice_with_passkey.post("/api/auth/logout")
    assert sign_in(alice_with_passkey, twin).status_code == 401  # marked here
    twin.sign_count += 100  # a copy can claim any count

    assert sign_in(alice_with_passkey, twin).status_code == 401
    assert sign_in(alice_with_passkey, device).status_code == 401
