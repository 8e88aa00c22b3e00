"""Setting up an authenticator app on the security page: the QR code and key, the code that turns
it on, the recovery codes shown once, turning it off; and what the database keeps of it."""

import re
import shutil
import subprocess
from urllib.parse import parse_qs, unquote, urlsplit

import pytest
from sqlalchemy.engine import make_url
from sqlmodel import select

from authsite.factors import totp
from authsite.models import Authenticator, RecoveryCode, User
from support import (
    RECOVERY_CODE, SETUP_FIELD, SETUP_KEY, FormPage, csrf_from, log_in, second_step, setup_page, site_of_its_own,
    turn_on_totp,
)


@pytest.fixture
def app_on(logged_in_client, clock):
    return turn_on_totp(logged_in_client, clock)


def rows(run_db, model):
    async def read(db):
        return list((await db.exec(select(model))).all())

    return run_db(read)


def alice_row(run_db) -> User:
    [user] = rows(run_db, User)
    return user


def confirm_setup(client, page: str, code: str):
    return client.post("/account/security/totp/confirm", data={
        "csrf_token": csrf_from(page), "setup": SETUP_FIELD.search(page).group(1), "code": code,
    })


def post_button(client, action: str):
    token = csrf_from(client.get("/account/security").text)
    return client.post(action, data={"csrf_token": token})


def database_dump(database_url: str, tmp_path) -> bytes:
    """Everything the database holds on disk (SQLite: the file and its WAL) or in a dump (Postgres)."""
    url = make_url(database_url)
    if url.get_backend_name() == "sqlite":
        files = [tmp_path / "data" / name for name in ("authsite.db", "authsite.db-wal")]
        return b"".join(path.read_bytes() for path in files if path.exists())
    assert shutil.which("pg_dump"), "pg_dump is needed to search a Postgres database (apt-get install postgresql)"
    dsn = url.set(drivername="postgresql").render_as_string(hide_password=False)
    return subprocess.run(["pg_dump", "--data-only", dsn], capture_output=True, check=True, timeout=60).stdout


# The security page and the setup page


def test_the_security_page_shows_the_app_off_and_offers_to_set_one_up(logged_in_client):
    page = logged_in_client.get("/account/security")

    assert page.status_code == 200
    assert "Off." in page.text
    assert 'action="/account/security/totp"' in page.text


def test_the_account_page_links_to_the_security_page(logged_in_client):
    assert 'href="/account/security"' in logged_in_client.get("/account").text


def test_setup_shows_the_otpauth_uri_as_text_and_as_an_inline_qr_code(logged_in_client, settings):
    page = setup_page(logged_in_client)

    uri = re.search(r'<code class="uri">([^<]+)</code>', page).group(1).replace("&amp;", "&")
    parts = urlsplit(uri)
    assert (parts.scheme, parts.netloc) == ("otpauth", "totp")
    assert unquote(parts.path) == f"/{settings.site_name}:alice"
    query = parse_qs(parts.query)
    assert query["issuer"] == [settings.site_name]
    assert query["secret"] == [SETUP_KEY.search(page).group(1).replace(" ", "")]
    assert '<svg' in page and 'class="qr-code"' in page
    assert not re.search(r"<script(?![^>]*\bsrc=)", page)  # drawn by the server, not by a script in the page


def test_the_code_field_is_ready_for_a_phone_and_a_password_manager(logged_in_client):
    field = FormPage(setup_page(logged_in_client)).inputs["code"]

    assert field["autocomplete"] == "one-time-code"
    assert field["inputmode"] == "numeric"


def test_the_site_name_setting_is_the_issuer(make_settings):
    with site_of_its_own(make_settings(site_name="Example Club"), "alice") as (client, site):
        log_in(client)
        page = setup_page(client)

    assert "issuer=Example%20Club" in page
    assert "<title>Set up an authenticator app · Example Club</title>" in page


# Turning it on


def test_a_right_code_turns_the_app_on_and_shows_ten_recovery_codes(logged_in_client, clock, run_db):
    page = setup_page(logged_in_client)
    secret = SETUP_KEY.search(page).group(1).replace(" ", "")

    response = confirm_setup(logged_in_client, page, totp.code_at(secret, clock.now))

    assert response.status_code == 200
    codes = RECOVERY_CODE.findall(response.text)
    assert len(codes) == len(set(codes)) == 10
    assert alice_row(run_db).mfa_enabled is True
    assert "On" in logged_in_client.get("/account/security").text


def test_the_recovery_codes_are_shown_once(logged_in_client, app_on):
    security = logged_in_client.get("/account/security").text

    assert "10</strong> unused recovery codes" in security
    assert not any(code in security for code in app_on.recovery_codes)


def test_the_codes_page_offers_them_as_a_text_download(logged_in_client, clock):
    page = setup_page(logged_in_client)
    secret = SETUP_KEY.search(page).group(1).replace(" ", "")
    shown = confirm_setup(logged_in_client, page, totp.code_at(secret, clock.now)).text

    link = re.search(r'<a class="button" href="(data:text/plain[^"]+)" download="([^"]+)">Download as text</a>', shown)
    assert link.group(2) == "authsite-recovery-codes.txt"
    text = unquote(link.group(1).replace("&amp;", "&").partition(",")[2])
    assert all(code in text for code in RECOVERY_CODE.findall(shown))


def test_a_wrong_code_turns_nothing_on(logged_in_client, clock, run_db):
    page = setup_page(logged_in_client)
    secret = SETUP_KEY.search(page).group(1).replace(" ", "")
    wrong = totp.code_at(secret, clock.now + 600)

    response = confirm_setup(logged_in_client, page, wrong)

    assert response.status_code == 400
    assert FormPage(response.text).error_for("code").startswith("That code is not right.")
    assert SETUP_KEY.search(response.text).group(1).replace(" ", "") == secret  # the same app entry still works
    assert rows(run_db, Authenticator) == [] and rows(run_db, RecoveryCode) == []
    assert alice_row(run_db).mfa_enabled is False


def test_a_code_from_a_phone_a_step_off_is_taken(logged_in_client, clock, run_db):
    page = setup_page(logged_in_client)
    secret = SETUP_KEY.search(page).group(1).replace(" ", "")

    assert confirm_setup(logged_in_client, page, totp.code_at(secret, clock.now - 30)).status_code == 200


def test_a_setup_form_from_another_session_does_not_open(logged_in_client, app, clock, run_db):
    from fastapi.testclient import TestClient

    page = setup_page(logged_in_client)
    secret = SETUP_KEY.search(page).group(1).replace(" ", "")
    other = TestClient(app, base_url="http://testserver", follow_redirects=False)
    other.portal = logged_in_client.portal
    log_in(other)
    mine = other.get("/account/security").text

    # Another session (the same user on another device) sends this session's sealed secret.
    response = other.post("/account/security/totp/confirm", data={
        "csrf_token": csrf_from(mine), "setup": SETUP_FIELD.search(page).group(1), "code": totp.code_at(secret, clock.now),
    })

    assert response.status_code == 400
    assert "That setup is too old or was started elsewhere" in response.text
    assert rows(run_db, Authenticator) == []


def test_a_setup_that_is_already_on_is_not_started_again(logged_in_client, app_on):
    response = post_button(logged_in_client, "/account/security/totp")

    assert response.status_code == 409
    assert "already on" in response.text


# What is stored


def test_the_secret_is_not_in_the_database_in_clear(logged_in_client, app_on, run_db, database_url, tmp_path):
    [row] = rows(run_db, Authenticator)
    dump = database_dump(database_url, tmp_path)

    assert app_on.secret.encode() not in dump
    assert app_on.secret.lower().encode() not in dump
    assert app_on.secret not in row.secret_sealed


def test_recovery_codes_are_kept_only_as_keyed_hashes(logged_in_client, app_on, run_db, database_url, tmp_path):
    stored = {row.code_hash for row in rows(run_db, RecoveryCode)}
    dump = database_dump(database_url, tmp_path)

    assert len(stored) == 10
    for code in app_on.recovery_codes:
        assert code.encode() not in dump and code.replace("-", "").encode() not in dump


def test_the_secret_is_never_in_the_log_or_the_audit_log(logged_in_client, clock, run_db, caplog):
    from authsite.models import AuthEvent

    caplog.set_level("DEBUG")
    app_on = turn_on_totp(logged_in_client, clock)

    assert app_on.secret not in caplog.text
    events = rows(run_db, AuthEvent)
    assert [e.kind for e in events if e.kind == "mfa_enabled"] == ["mfa_enabled"]
    assert not any(app_on.secret in str(e.detail) for e in events)


# Turning it off, new recovery codes


def test_turning_the_app_off_removes_it_and_its_recovery_codes(logged_in_client, app_on, run_db):
    response = post_button(logged_in_client, "/account/security/totp/disable")

    assert (response.status_code, response.headers["location"]) == (303, "/account/security")
    assert rows(run_db, Authenticator) == [] and rows(run_db, RecoveryCode) == []
    assert alice_row(run_db).mfa_enabled is False
    assert "Off." in logged_in_client.get("/account/security").text


def test_new_recovery_codes_replace_every_old_one(logged_in_client, client, app_on):
    response = post_button(logged_in_client, "/account/security/recovery-codes")
    new_codes = RECOVERY_CODE.findall(response.text)

    assert response.status_code == 200 and len(new_codes) == 10
    assert set(new_codes).isdisjoint(app_on.recovery_codes)
    post_button(client, "/auth/logout")
    log_in(client)
    assert second_step(client, app_on.recovery_codes[0]).status_code == 401
    assert second_step(client, new_codes[0]).status_code == 303


def test_recovery_codes_need_a_second_factor_first(logged_in_client):
    response = post_button(logged_in_client, "/account/security/recovery-codes")

    assert response.status_code == 409
    assert "turn one on first" in response.text


def test_the_security_page_warns_when_few_recovery_codes_are_left(logged_in_client, client, app_on):
    for code in app_on.recovery_codes[:7]:
        post_button(client, "/auth/logout")
        log_in(client)
        assert second_step(client, code).status_code == 303

    page = client.get("/account/security").text

    assert "3</strong> unused recovery codes left" in page
    assert "Only 3 left: make new ones" in page
