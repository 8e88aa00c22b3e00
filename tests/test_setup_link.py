"""The first account without a second terminal: while the site has no user at all, `python run.py`
prints a one-time setup link (256 bits, stored only as a hash, one hour) where the operator makes
the first `super` account in the browser and is logged in. Once any user exists the link is dead,
and a dead link of any kind answers the same 404 as a page that does not exist."""

import asyncio
import os
import re
import subprocess
import sys
from datetime import timedelta

import httpx2
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import update
from sqlmodel import select

from authsite import create_app, first_admin, logs, strength, tokens
from authsite.events import Kind
from authsite.models import AuthEvent, SetupLink, User, utcnow
from support import PASSWORD, FormPage, csrf_from, log_in, running_site

PUBLIC_URL = "https://auth.example.com"
LINE = re.compile(r"Create the first account: (\S+)/auth/setup/([A-Za-z0-9_-]+)")
STARTS_AT_ONCE = 3


@pytest.fixture
def settings(make_settings):
    return make_settings(base_url=PUBLIC_URL)


@pytest.fixture
def token(client, site) -> str:
    """The live link's token, as the start prints it."""
    return client.portal.call(site.setup_links.current_link).token


def set_up(client, token, username="root", password=PASSWORD, *, confirm=None, email="", **extra):
    page = client.get(f"/auth/setup/{token}")
    assert page.status_code == 200, page.text
    data = {"username": username, "email": email, "password": password,
            "password_confirm": password if confirm is None else confirm, "csrf_token": csrf_from(page.text), **extra}
    return client.post(f"/auth/setup/{token}", data=data)


def all_users(run_db) -> list[User]:
    return run_db(lambda db: _all(db, User))


def link_rows(run_db) -> list[SetupLink]:
    return run_db(lambda db: _all(db, SetupLink))


async def _all(db, model):
    return list((await db.exec(select(model))).all())


def assert_not_found(response) -> None:
    assert response.status_code == 404, response.text
    assert "Page not found" in response.text and "/auth/setup" not in response.text


# The link the start prints


def test_a_first_start_with_no_user_prints_a_link_that_opens_the_setup_page(tmp_path, database_url):
    with running_site(tmp_path, database_url, base_url="http://127.0.0.1:1") as (url, _):
        found = LINE.search((tmp_path / "server.log").read_text())
        assert found, (tmp_path / "server.log").read_text()
        assert found.group(1) == "http://127.0.0.1:1"  # the public base URL, as in mailed links
        page = httpx2.get(f"{url}/auth/setup/{found.group(2)}", timeout=10)
        assert page.status_code == 200
        assert "csrf_token" in page.text


def test_each_start_while_no_user_exists_prints_the_same_live_link(tmp_path, database_url):
    links = []
    for _ in range(2):
        with running_site(tmp_path, database_url):
            links.append(LINE.search((tmp_path / "server.log").read_text()).group(2))
    assert links[0] == links[1]  # the token; each start has a port of its own


def test_a_start_with_a_user_prints_no_link(tmp_path, database_url, run_cli):
    assert run_cli("create-user", "alice", "--password-stdin", stdin=PASSWORD + "\n").returncode == 0

    with running_site(tmp_path, database_url):
        log = (tmp_path / "server.log").read_text()
    assert "/auth/setup/" not in log and "first account" not in log


START_WHEN_TOLD = """
import asyncio, sys, time
from pathlib import Path
from authsite import Settings, first_admin
from authsite.app import AuthSite

go = Path(sys.argv[1])
site = AuthSite(Settings())

async def start_and_print():
    await site.start()
    try:
        for line in await first_admin.setup_link_lines(site.setup_links, base_url=site.settings.public_url):
            print(line, flush=True)
    finally:
        await site.stop()

print("ready", flush=True)
while not go.exists():
    time.sleep(0.001)
asyncio.run(start_and_print())
"""


def test_servers_starting_at_once_on_one_database_print_one_link_that_works(tmp_path, database_url, client):
    env = {name: value for name, value in os.environ.items() if not name.startswith("AUTHSITE_")}
    env |= {"AUTHSITE_DATA_DIR": str(tmp_path / "data"), "AUTHSITE_DATABASE_URL": database_url,
            "AUTHSITE_BASE_URL": PUBLIC_URL}
    go = tmp_path / "go"
    starts = [subprocess.Popen([sys.executable, "-c", START_WHEN_TOLD, str(go)], env=env, cwd=tmp_path,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
              for _ in range(STARTS_AT_ONCE)]
    try:
        for start in starts:
            assert start.stdout.readline().strip() == "ready"
        go.touch()
        outputs = [start.communicate(timeout=60) for start in starts]
    finally:
        for start in starts:
            if start.poll() is None:
                start.kill()
    links = {LINE.search(out).group(0) if LINE.search(out) else err for out, err in outputs}
    assert len(links) == 1, outputs
    token = LINE.search(outputs[0][0]).group(2)
    assert client.get(f"/auth/setup/{token}").status_code == 200


def test_the_token_has_256_bits(token):
    assert tokens.is_well_formed(token)  # 43 characters of base64url: 256 bits


def test_the_token_is_stored_only_as_its_hash(token, run_db):
    [row] = link_rows(run_db)
    assert row.token_hash == tokens.hash_token(token)
    assert token not in repr(row.model_dump())


@pytest.mark.sqlite_only
def test_the_raw_token_is_nowhere_in_the_database_files(token, settings):
    for path in settings.data_dir.glob("authsite.db*"):
        assert token.encode() not in path.read_bytes(), path


def test_an_expired_link_is_replaced_by_a_new_one_at_the_next_start(client, site, token, run_db):
    expire_links(run_db)

    fresh = client.portal.call(site.setup_links.current_link)

    assert fresh.token != token
    assert_not_found(client.get(f"/auth/setup/{token}"))
    assert client.get(f"/auth/setup/{fresh.token}").status_code == 200


def test_a_site_started_with_an_admin_from_the_environment_has_no_link(make_settings):
    app = create_app(make_settings(admin_username="boss", admin_password=PASSWORD))
    with TestClient(app) as client:
        assert client.portal.call(app.state.authsite.setup_links.current_link) is None


def test_the_access_log_never_keeps_the_setup_token(token):
    line = f'127.0.0.1 - "GET /auth/setup/{token} HTTP/1.1" 200; "POST /api/auth/setup/{token}" 201'
    assert token not in logs.redact(line)


# The page


def test_the_setup_page_has_the_sign_up_fields_and_a_csrf_token(client, token):
    page = FormPage(client.get(f"/auth/setup/{token}").text)

    assert {"username", "email", "password", "password_confirm", "csrf_token"} <= set(page.inputs)
    assert page.inputs["password"]["autocomplete"] == "new-password"
    assert page.inputs["csrf_token"]["value"]


def test_the_setup_page_keeps_its_address_to_itself_and_out_of_caches(client, token):
    response = client.get(f"/auth/setup/{token}")

    assert response.headers["referrer-policy"] == "strict-origin"
    assert response.headers["cache-control"] == "no-store"


def test_no_page_of_the_site_offers_the_link(client, token):
    for path in ("/", "/auth/login", "/auth/register"):
        assert "/auth/setup" not in client.get(path).text


# Making the first account


def test_the_link_makes_a_super_account_and_logs_it_in(client, token, run_db):
    response = set_up(client, token)

    assert response.status_code == 303
    assert response.headers["location"] == "/admin/users"
    assert "session" in response.cookies
    landing = client.get("/admin/users")
    assert landing.status_code == 200 and "The setup link no longer works" in landing.text
    me = client.get("/api/me").json()
    assert me["username"] == "root"
    assert set(me["scopes"]) == {"authenticated", "admin", "super"}


def test_the_first_account_logs_in_again_with_its_password(app, client, token):
    set_up(client, token)
    client.post("/auth/logout", data={"csrf_token": csrf_from(client.get("/auth/logout").text)})

    assert log_in(client, "root").status_code == 303


def test_the_first_account_is_in_the_audit_log(client, token, run_db):
    set_up(client, token, email="root@example.com")

    [user] = all_users(run_db)
    events = run_db(lambda db: _all(db, AuthEvent))
    made = [event for event in events if event.kind == Kind.FIRST_ADMIN_CREATED]
    assert [(event.user_id, event.ip) for event in made] == [(user.id, "testclient")]


def test_the_address_typed_is_taken_as_confirmed_like_create_user(client, token, run_db):
    set_up(client, token, email="Root@Example.com")

    [user] = all_users(run_db)
    assert user.email == "Root@example.com" and user.email_confirmed_at is not None


def test_a_refused_form_reports_every_field_like_sign_up_and_keeps_the_link(client, token, run_db):
    response = set_up(client, token, username="x", password="short", confirm="other", email="not an address")

    assert response.status_code == 400
    errors = FormPage(response.text).errors()
    assert set(errors) == {"username", "email", "password", "password_confirm"}, errors
    assert response.headers["referrer-policy"] == "strict-origin"
    assert all_users(run_db) == []
    assert set_up(client, token).status_code == 303


def test_the_passwords_must_match(client, token, run_db):
    response = set_up(client, token, confirm="another long phrase 9")

    assert FormPage(response.text).error_for("password_confirm") == "The two passwords differ."
    assert all_users(run_db) == []


def test_a_form_without_the_csrf_token_makes_nothing(client, token, run_db):
    client.get(f"/auth/setup/{token}")
    response = client.post(f"/auth/setup/{token}", data={"username": "root", "password": PASSWORD,
                                                         "password_confirm": PASSWORD})
    assert response.status_code == 403
    assert all_users(run_db) == []


def test_scopes_smuggled_into_the_form_change_nothing(client, token, run_db):
    set_up(client, token, scopes="reports")

    [user] = all_users(run_db)
    assert sorted(user.scopes) == ["admin", "authenticated", "super"]


# A dead link: the same 404 whatever the reason


def test_a_used_link_answers_404(client, token):
    set_up(client, token)

    assert_not_found(client.get(f"/auth/setup/{token}"))


def test_a_used_link_cannot_make_a_second_account(app, client, token, run_db):
    later = TestClient(app, base_url="http://testserver", follow_redirects=False)
    later.portal = client.portal  # another browser on the same running site
    form = {"username": "second", "email": "", "password": PASSWORD, "password_confirm": PASSWORD,
            "csrf_token": csrf_from(later.get(f"/auth/setup/{token}").text)}
    set_up(client, token)

    assert_not_found(later.post(f"/auth/setup/{token}", data=form))
    assert [user.username for user in all_users(run_db)] == ["root"]


def expire_links(run_db) -> None:
    async def expire(db):
        await db.exec(update(SetupLink).values(expires_at=utcnow() - timedelta(seconds=1)))
        await db.commit()

    run_db(expire)


def test_an_expired_link_answers_404(client, token, run_db):
    expire_links(run_db)

    assert_not_found(client.get(f"/auth/setup/{token}"))
    assert client.post(f"/api/auth/setup/{token}", json={"username": "root", "password": PASSWORD,
                                                         "password_confirm": PASSWORD}).status_code == 404
    assert all_users(run_db) == []


def test_the_link_is_dead_once_a_user_exists_by_other_means(client, site, token, run_cli, run_db):
    assert run_cli("create-user", "alice", "--password-stdin", stdin=PASSWORD + "\n").returncode == 0

    assert_not_found(client.get(f"/auth/setup/{token}"))
    assert client.portal.call(site.setup_links.current_link) is None
    assert link_rows(run_db) == []


def test_a_user_who_signed_up_kills_the_link_too(client, token, make_user):
    make_user("alice")

    assert_not_found(client.get(f"/auth/setup/{token}"))


@pytest.mark.parametrize("wrong", ["A" * 43, "short", "x" * 300, "%00", "..%2f..%2fhealthz"])
def test_a_wrong_token_answers_the_same_404_as_a_page_that_does_not_exist(client, token, wrong):
    dead = client.get(f"/auth/setup/{wrong}")
    nowhere = client.get("/auth/nowhere")

    assert_not_found(dead)
    assert dead.status_code == nowhere.status_code
    assert FormPage(dead.text).texts_by_id == FormPage(nowhere.text).texts_by_id


def test_a_wrong_token_costs_no_password_work(client, site, token, monkeypatch):
    calls = []
    monkeypatch.setattr(site.hasher, "hash", lambda *a, **k: calls.append("hash"))
    monkeypatch.setattr(strength, "password_problem", lambda *a, **k: calls.append("strength"))
    page = client.get(f"/auth/setup/{token}")
    form = {"username": "root", "password": PASSWORD, "password_confirm": PASSWORD, "csrf_token": csrf_from(page.text)}

    assert_not_found(client.post(f"/auth/setup/{'B' * 43}", data=form))
    assert client.post(f"/api/auth/setup/{'B' * 43}", json=form).status_code == 404
    assert calls == []


def test_two_people_racing_one_link_make_one_account(app, client, token, run_db):
    async def both_at_once():
        transport = httpx2.ASGITransport(app=app, raise_app_exceptions=False)
        browsers = [httpx2.AsyncClient(transport=transport, base_url="http://testserver") for _ in range(2)]
        try:
            forms = []
            for number, browser in enumerate(browsers):
                page = await browser.get(f"/auth/setup/{token}")
                forms.append({"username": f"racer{number}", "email": "", "password": PASSWORD,
                              "password_confirm": PASSWORD, "csrf_token": csrf_from(page.text)})
            answers = await asyncio.gather(*(browser.post(f"/auth/setup/{token}", data=form)
                                             for browser, form in zip(browsers, forms)))
            return [answer.status_code for answer in answers]
        finally:
            await asyncio.gather(*(browser.aclose() for browser in browsers))

    assert sorted(client.portal.call(both_at_once)) == [303, 404]
    [user] = all_users(run_db)
    assert "super" in user.scopes


def test_the_api_and_the_page_racing_one_link_make_one_account(app, client, token, run_db):
    async def both_at_once():
        transport = httpx2.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx2.AsyncClient(transport=transport, base_url="http://testserver") as page_browser, \
                httpx2.AsyncClient(transport=transport, base_url="http://testserver") as script:
            page = await page_browser.get(f"/auth/setup/{token}")
            form = {"username": "bypage", "password": PASSWORD, "password_confirm": PASSWORD,
                    "csrf_token": csrf_from(page.text)}
            body = {"username": "byapi", "password": PASSWORD, "password_confirm": PASSWORD}
            answers = await asyncio.gather(page_browser.post(f"/auth/setup/{token}", data=form),
                                           script.post(f"/api/auth/setup/{token}", json=body))
            return [answer.status_code for answer in answers]

    statuses = client.portal.call(both_at_once)
    assert sorted(statuses) in ([201, 404], [303, 404]), statuses
    assert len(all_users(run_db)) == 1


# The JSON twin


def test_the_api_makes_the_first_account_with_a_session_cookie(client, token):
    response = client.post(f"/api/auth/setup/{token}", json={
        "username": "root", "email": "root@example.com", "password": PASSWORD, "password_confirm": PASSWORD,
    })

    assert response.status_code == 201, response.text
    assert set(response.json()["user"]["scopes"]) == {"authenticated", "admin", "super"}
    assert response.cookies.get("session")
    assert response.headers["cache-control"] == "no-store"
    assert client.get("/api/me").json()["username"] == "root"
    assert client.post(f"/api/auth/setup/{token}", json={"username": "again", "password": PASSWORD,
                                                         "password_confirm": PASSWORD}).status_code == 404


def test_the_api_reports_every_field_that_is_wrong(client, token, run_db):
    response = client.post(f"/api/auth/setup/{token}", json={
        "username": "", "password": "short", "password_confirm": "other",
    })

    assert response.status_code == 400
    assert set(response.json()["errors"]) == {"username", "password", "password_confirm"}
    assert all_users(run_db) == []


def test_the_api_answers_a_dead_link_with_a_plain_404(client):
    response = client.post(f"/api/auth/setup/{'C' * 43}", json={"username": "root", "password": PASSWORD,
                                                                "password_confirm": PASSWORD})

    assert response.status_code == 404
    assert response.json() == {"detail": "Not Found"}


def test_the_start_lines_name_the_link_and_how_long_it_lasts(client, site, token):
    lines = client.portal.call(lambda: first_admin.setup_link_lines(site.setup_links, base_url=PUBLIC_URL))

    assert lines[0] == f"Create the first account: {PUBLIC_URL}/auth/setup/{token}"
    assert "once" in lines[1] and "UTC" in lines[1]


def test_the_start_lines_are_empty_once_a_user_exists(client, site, make_user):
    make_user("alice")

    assert client.portal.call(lambda: first_admin.setup_link_lines(site.setup_links, base_url=PUBLIC_URL)) == []
