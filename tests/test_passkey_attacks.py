"""Passkeys attacked: what an attacker can send to the ceremonies' routes, and what must not work.
A software passkey (tests/soft_passkey.py) plays both the honest and the hostile authenticator."""

import json
import struct

import cbor2
import pytest
from fastapi.testclient import TestClient
from sqlmodel import select

from authsite.models import Passkey, ThrottleHit
from soft_passkey import AT, UP, UV, SoftPasskey, b64
from support import PASSWORD, csrf_from, log_in

BASE_URL = "http://localhost"
LOGIN_API = "/api/auth/passkey/verify"
OPTIONS_API = "/api/auth/passkey/options"
CREATION_OPTIONS_API = "/api/account/passkeys/options"


@pytest.fixture
def settings(make_settings):
    return make_settings(base_url=BASE_URL)


def browser(app, client) -> TestClient:
    """Another browser on the same site; a server error is an answer (500), not an exception."""
    other = TestClient(app, base_url="http://testserver", follow_redirects=False, raise_server_exceptions=False)
    other.portal = client.portal
    return other


def rows(run_db, model):
    async def read(db):
        return list((await db.exec(select(model))).all())

    return run_db(read)


def options(client, path=OPTIONS_API) -> dict:
    response = client.post(path, json={})
    assert response.status_code == 200, response.text
    return response.json()["publicKey"]


def add_passkey(client, device: SoftPasskey, credential: dict | None = None):
    page = client.get("/account/security").text
    credential = credential or device.create(options(client, CREATION_OPTIONS_API))
    return client.post("/account/security/passkeys", data={
        "csrf_token": csrf_from(page), "name": "Key", "credential": json.dumps(credential),
    })


def made_with_key(device: SoftPasskey, options: dict, cose: bytes, credential_id: bytes | None = None) -> dict:
    """A creation answer whose attested public key (CBOR) and credential id are the attacker's choice."""
    answer = device.create(options)
    device.credential_id = credential_id if credential_id is not None else device.credential_id
    attested = bytes(16) + struct.pack(">H", len(device.credential_id)) + device.credential_id + cose
    auth_data = device._auth_data(options["rp"]["id"], UP | UV | AT, attested)
    answer["id"] = answer["rawId"] = device.id
    answer["response"]["attestationObject"] = b64(cbor2.dumps({"fmt": "none", "attStmt": {}, "authData": auth_data}))
    return answer


@pytest.fixture
def alice(app, client, user):
    """alice, logged in, with one passkey (`alice.device`)."""
    alice = browser(app, client)
    log_in(alice)
    alice.device = SoftPasskey(origin=BASE_URL)
    assert add_passkey(alice, alice.device).status_code == 200
    return alice


# Hostile input: every answer is a refusal (4xx), never a server error.

ODD_IDS = ["\ud800", "abc\u0000def", "\u202e" * 10]


@pytest.mark.parametrize("credential_id", ODD_IDS, ids=["lone-surrogate", "nul", "bidi"])
def test_an_odd_credential_id_at_the_passkey_login_is_a_refusal(alice, app, client, credential_id):
    stranger = browser(app, client)
    page = stranger.get("/auth/login").text
    options(stranger)
    # As text in the form field (the JSON escape reaches the server as the character itself).
    form = stranger.post("/auth/passkey", data={
        "csrf_token": csrf_from(page), "credential": json.dumps({"id": credential_id}),
    })
    api = stranger.post(LOGIN_API, content=json.dumps({"credential": {"id": credential_id}}),
                        headers={"content-type": "application/json"})

    assert (form.status_code, api.status_code) == (401, 401)


@pytest.mark.parametrize("credential_id", ODD_IDS, ids=["lone-surrogate", "nul", "bidi"])
def test_an_odd_credential_id_at_the_second_step_and_confirm_is_a_counted_refusal(alice, app, client, run_db,
                                                                                 credential_id):
    """Behind the second step and sudo mode the attempt is reserved in the rate limits first: a
    crash there would leave the reservation pending (not counted as a failure, and "busy")."""
    body = json.dumps({"credential": {"id": credential_id}})
    json_type = {"content-type": "application/json"}
    attacker = browser(app, client)  # knows alice's password
    assert attacker.post("/api/auth/login", json={"username": "alice", "password": PASSWORD}).status_code == 202
    options(attacker)
    second_step = attacker.post("/api/auth/mfa", content=body, headers=json_type)
    options(alice)
    confirm = alice.post("/api/auth/confirm", content=body, headers=json_type)

    assert [hit for hit in rows(run_db, ThrottleHit) if hit.pending] == []
    assert (second_step.status_code, confirm.status_code) == (401, 401)


def test_crashing_answers_cannot_hold_the_owner_out_of_sudo_mode(alice, app, client):
    """With alice's password (phished), an attacker's pending login sends 11 answers whose credential
    id the database driver cannot take: each left its reservation pending in the account's own
    second-factor bucket, so alice, in her own browser, could not confirm for sudo mode (503)."""
    attacker = browser(app, client)
    assert attacker.post("/api/auth/login", json={"username": "alice", "password": PASSWORD}).status_code == 202
    for _ in range(11):
        options(attacker)
        attacker.post("/api/auth/mfa", content=json.dumps({"credential": {"id": "\ud800"}}),
                      headers={"content-type": "application/json"})

    response = alice.post("/api/auth/confirm", json={"credential": alice.device.get(options(alice))})

    assert response.status_code == 204


def test_a_public_key_that_is_not_a_cbor_map_is_refused(app, client, user, run_db):
    alice = browser(app, client)
    log_in(alice)
    device = SoftPasskey(origin=BASE_URL)
    answer = made_with_key(device, options(alice, CREATION_OPTIONS_API), cbor2.dumps([2]))

    response = add_passkey(alice, device, answer)

    assert response.status_code == 400
    assert rows(run_db, Passkey) == []


def test_a_credential_id_longer_than_webauthn_allows_is_refused(app, client, user, run_db):
    """WebAuthn L3, registration step 24: ids over 1023 bytes SHOULD fail the ceremony. The site
    could never find such a passkey again (and its column holds 1400 characters, 1050 bytes)."""
    alice = browser(app, client)
    log_in(alice)
    device = SoftPasskey(origin=BASE_URL)
    key = device.key.public_key().public_numbers()
    cose = cbor2.dumps({1: 2, 3: -7, -1: 1, -2: key.x.to_bytes(32, "big"), -3: key.y.to_bytes(32, "big")})
    answer = made_with_key(device, options(alice, CREATION_OPTIONS_API), cose, credential_id=b"\x01" * 1100)

    response = add_passkey(alice, device, answer)

    assert response.status_code == 400
    assert rows(run_db, Passkey) == []


def test_a_public_key_that_cannot_check_a_signature_is_refused(app, client, user, run_db):
    """'none' attestation vouches for nothing: a key off its curve would be a second factor that
    can never answer (the account's flag on, its owner left with recovery codes only)."""
    alice = browser(app, client)
    log_in(alice)
    device = SoftPasskey(origin=BASE_URL)
    off_the_curve = cbor2.dumps({1: 2, 3: -7, -1: 1, -2: b"\x01" * 32, -3: b"\x02" * 32})
    answer = made_with_key(device, options(alice, CREATION_OPTIONS_API), off_the_curve)

    response = add_passkey(alice, device, answer)

    assert response.status_code == 400
    assert rows(run_db, Passkey) == []


# Another account's passkey


def test_a_credential_id_of_another_account_cannot_be_registered_again(alice, app, client, make_user, run_db):
    """mallory's authenticator claims alice's credential id (with mallory's own key)."""
    make_user("mallory")
    mallory = browser(app, client)
    log_in(mallory, "mallory")
    forged = SoftPasskey(origin=BASE_URL)
    forged.credential_id = alice.device.credential_id

    response = add_passkey(mallory, forged)

    assert response.status_code == 400
    [only] = rows(run_db, Passkey)
    assert only.credential_id == alice.device.id and only.user_id == alice.get("/api/me").json()["id"]
    stranger = browser(app, client)
    assert stranger.post(LOGIN_API, json={"credential": forged.get(options(stranger))}).status_code == 401


def test_another_accounts_passkey_does_not_confirm_for_sudo_mode(alice, app, client, make_user):
    make_user("mallory")
    mallory = browser(app, client)
    log_in(mallory, "mallory")
    mallorys_key = SoftPasskey(origin=BASE_URL)
    assert add_passkey(mallory, mallorys_key).status_code == 200

    # alice's session (a browser left open) confirmed with mallory's passkey.
    response = alice.post("/api/auth/confirm", json={"credential": mallorys_key.get(options(alice))})

    assert response.status_code == 401


# One answer, one use, one purpose


def test_an_answer_spent_on_the_second_step_does_not_sign_in_again(alice, app, client):
    assert alice.post("/api/auth/logout").status_code == 204
    assert alice.post("/api/auth/login", json={"username": "alice", "password": PASSWORD}).status_code == 202
    answer = alice.device.get(options(alice))
    challenge = alice.cookies.get("passkey_challenge")
    assert alice.post("/api/auth/mfa", json={"credential": answer}).status_code == 200

    replay = browser(app, client)
    replay.cookies.set("passkey_challenge", challenge)

    assert replay.post(LOGIN_API, json={"credential": answer}).status_code == 401
    assert replay.get("/api/me").status_code == 401


def test_a_creation_challenge_is_not_an_authentication_challenge(alice, app, client):
    creation = options(alice, CREATION_OPTIONS_API)
    answer = alice.device.get({**creation, "rpId": creation["rp"]["id"]})
    stranger = browser(app, client)
    stranger.cookies.set("passkey_challenge", alice.cookies.get("passkey_challenge"))

    assert stranger.post(LOGIN_API, json={"credential": answer}).status_code == 401


def test_a_sibling_site_cannot_post_an_answer(alice, app, client):
    stranger = browser(app, client)
    answer = alice.device.get(options(stranger))

    response = stranger.post(LOGIN_API, json={"credential": answer}, headers={"sec-fetch-site": "same-site"})

    assert response.status_code == 403


# The security page's own inputs


@pytest.mark.parametrize("passkey_id", ["abc", "-1", "0", "1.5", "99999999999", "%00"])
def test_an_odd_passkey_id_to_remove_is_a_4xx(alice, run_db, passkey_id):
    page = alice.get("/account/security").text

    form = alice.post(f"/account/security/passkeys/{passkey_id}/delete", data={"csrf_token": csrf_from(page)})
    api = alice.delete(f"/api/account/passkeys/{passkey_id}")

    assert 400 <= form.status_code < 500 and 400 <= api.status_code < 500
    assert len(rows(run_db, Passkey)) == 1


def test_a_hostile_passkey_name_is_stored_clean_and_short(app, client, user, run_db):
    alice = browser(app, client)
    log_in(alice)
    device = SoftPasskey(origin=BASE_URL)
    name = "\u202e<script>alert(1)</script>\r\nBcc: x@example.com\x00\ud800" + "x" * 10_000

    response = alice.post("/api/account/passkeys/verify", content=json.dumps({
        "credential": device.create(options(alice, CREATION_OPTIONS_API)), "name": name,
    }), headers={"content-type": "application/json"})

    assert response.status_code == 201, response.text
    [passkey] = rows(run_db, Passkey)
    assert len(passkey.name) <= 64 and passkey.name.isprintable()
    assert passkey.name.startswith("<script>alert(1)</script> Bcc: x@example.com")
    assert "&lt;script&gt;" in alice.get("/account/security").text
