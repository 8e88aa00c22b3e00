"""The audit log: one `auth_event` row (and one log line) for each thing that happens to an
account, with who, from where and with what browser; users read their own on /account,
admins read and filter everyone's on /admin/events; old rows are pruned; and a broken
audit log never breaks the request it describes."""

import email
import email.policy
import html
import json
import logging
import re
import time
from datetime import timedelta
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import column, insert, table, text, update
from sqlmodel import col, select

from authsite import Settings, create_app, events, tokens
from authsite.events import Kind
from authsite.models import AuthEvent, Session, User, utcnow
from support import PASSWORD, form_token, log_in

FIREFOX = "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0"
NEW_PASSWORD = "new password 456"
WRONG_PASSWORD = "another long phrase 9"
ALICE_EMAIL = "alice@example.com"
EVENT_WHAT = re.compile(r'<span class="event-what">([^<]*)</span>')
EVENT_ROW = re.compile(r'<td data-label="What">([^<]*)</td>\s*<td data-label="Account">(.*?)</td>', re.DOTALL)
OLDER_LINK = re.compile(r'href="(/admin/events\?[^"]*)"[^>]*>\s*Older')
TAG = re.compile(r"<[^>]+>")


@pytest.fixture(autouse=True)
def firefox(client):
    """Every request of the test's main browser comes from a recognisable browser."""
    client.headers["user-agent"] = FIREFOX


class Trail:
    """The audit log as a test reads it: the rows written since the last look."""

    def __init__(self, run_db):
        self.run_db = run_db
        self.last_id = 0

    def new(self) -> list[AuthEvent]:
        async def read(db):
            statement = select(AuthEvent).where(col(AuthEvent.id) > self.last_id).order_by(col(AuthEvent.id))
            return list((await db.exec(statement)).all())

        rows = self.run_db(read)
        if rows:
            self.last_id = rows[-1].id
        return rows

    def mark(self) -> None:
        """Look away from everything written so far (the setup's own logins)."""
        self.new()

    def one_new(self, kind: Kind) -> AuthEvent:
        rows = self.new()
        assert [row.kind for row in rows] == [kind], [(row.kind, row.detail) for row in rows]
        return rows[0]


@pytest.fixture
def trail(run_db) -> Trail:
    return Trail(run_db)


def another_browser(app, client) -> TestClient:
    """A second browser on the same running site: its own cookies, the app's own event loop."""
    other = TestClient(app, base_url="http://testserver", follow_redirects=False)
    other.portal = client.portal
    return other


def assert_from_this_browser(event: AuthEvent, user_agent: str = FIREFOX) -> None:
    assert event.ip == "testclient"
    assert event.user_agent == user_agent


def post_from(browser, form_page: str, path: str, **fields):
    return browser.post(path, data={**fields, "csrf_token": form_token(browser, form_page)})


def session_ids(run_db, user_id: int) -> list[int]:
    async def read(db):
        return list((await db.exec(select(Session.id).where(Session.user_id == user_id))).all())

    return run_db(read)


def find(run_db, username: str) -> User | None:
    async def read(db):
        return (await db.exec(select(User).where(User.username == username))).first()

    return run_db(read)


def outbox(settings) -> list[Path]:
    return sorted((settings.data_dir / "outbox").glob("*.eml"))


def save_user(browser, user_id, scopes, active="true"):
    data = {"scopes": [*scopes, ""], "active": active, "csrf_token": form_token(browser, "/account")}
    return browser.post(f"/admin/users/{user_id}", data=data)


@pytest.fixture
def settings(make_settings):
    # The admin below is a plain admin; the site lets it hand out `reports`.
    return make_settings(admin_grantable_scopes="reports")


@pytest.fixture
def admin(app, client, make_user) -> TestClient:
    make_user("ada", scopes=("authenticated", "admin"))
    browser = another_browser(app, client)
    assert log_in(browser, "ada").status_code == 303
    return browser


# Logging in and out

def test_a_form_login_records_one_login_event(client, user, trail):
    assert log_in(client).status_code == 303

    event = trail.one_new(Kind.LOGIN)
    assert event.user_id == user.id
    assert event.actor_id is None
    assert_from_this_browser(event)
    assert event.detail == {"via": "form", "new_device": True}  # its first login from this browser
    assert utcnow() - event.created_at < timedelta(minutes=1)


@pytest.mark.parametrize(
    ("typed_name", "password", "reason"),
    [("Mallory", PASSWORD, "unknown_user"), ("ALICE", WRONG_PASSWORD, "bad_password"), ("bob", PASSWORD, "inactive")],
)
def test_a_failed_form_login_records_why(client, user, make_user, trail, typed_name, password, reason):
    bob = make_user("bob", active=False)

    assert log_in(client, typed_name, password).status_code == 401

    event = trail.one_new(Kind.LOGIN_FAILED)
    assert event.detail["reason"] == reason
    assert event.user_id == {"unknown_user": None, "bad_password": user.id, "inactive": bob.id}[reason]
    assert event.username == typed_name
    assert_from_this_browser(event)


# No valid name holds these characters, but the attempt happened and must be on record.
@pytest.mark.parametrize("typed_name", ["al\x00ice", "al\ud800ice"])
def test_a_failed_login_with_an_unstorable_name_is_still_recorded(client, user, trail, typed_name):
    body = json.dumps({"username": typed_name, "password": PASSWORD})

    response = client.post("/api/auth/login", content=body, headers={"content-type": "application/json"})

    assert response.status_code == 401
    event = trail.one_new(Kind.LOGIN_FAILED)
    assert (event.user_id, event.detail["reason"]) == (None, "unknown_user")
    assert event.username.startswith("al")


def test_an_api_login_records_one_login_event(client, user, trail):
    response = client.post("/api/auth/login", json={"username": "alice", "password": PASSWORD})
    assert response.status_code == 200

    event = trail.one_new(Kind.LOGIN)
    assert event.user_id == user.id
    assert event.detail == {"via": "api", "new_device": True}
    assert_from_this_browser(event)


def test_a_failed_api_login_records_why(client, user, trail):
    response = client.post("/api/auth/login", json={"username": "alice", "password": WRONG_PASSWORD})
    assert response.status_code == 401

    event = trail.one_new(Kind.LOGIN_FAILED)
    assert (event.user_id, event.detail["reason"], event.detail["via"]) == (user.id, "bad_password", "api")


def test_a_form_logout_records_one_logout_event(logged_in_client, user, trail):
    trail.mark()

    response = post_from(logged_in_client, "/auth/logout", "/auth/logout")
    assert response.status_code == 303

    event = trail.one_new(Kind.LOGOUT)
    assert event.user_id == user.id
    assert_from_this_browser(event)


def test_an_api_logout_records_one_logout_event(logged_in_client, user, trail):
    trail.mark()

    assert logged_in_client.post("/api/auth/logout", json={}).status_code == 204

    event = trail.one_new(Kind.LOGOUT)
    assert (event.user_id, event.detail) == (user.id, {"via": "api"})


def test_logging_out_when_not_logged_in_records_nothing(client, trail):
    assert client.post("/auth/logout").status_code == 303

    assert trail.new() == []


# Sessions and passwords

def test_revoking_a_session_on_the_account_page_is_recorded(app, logged_in_client, user, run_db, trail):
    phone = another_browser(app, logged_in_client)
    assert log_in(phone).status_code == 303
    phone_session = max(session_ids(run_db, user.id))
    trail.mark()

    response = post_from(logged_in_client, "/account", f"/account/sessions/{phone_session}/revoke")
    assert response.status_code == 303

    event = trail.one_new(Kind.SESSION_REVOKED)
    assert (event.user_id, event.detail) == (user.id, {"session_id": phone_session})
    assert_from_this_browser(event)


def test_revoking_someone_elses_session_records_nothing(app, logged_in_client, make_user, run_db, trail):
    bob = make_user("bob")
    bobs_browser = another_browser(app, logged_in_client)
    assert log_in(bobs_browser, "bob").status_code == 303
    trail.mark()

    response = post_from(logged_in_client, "/account", f"/account/sessions/{session_ids(run_db, bob.id)[0]}/revoke")

    assert response.status_code == 404
    assert trail.new() == []


def test_signing_out_everywhere_else_is_recorded(app, logged_in_client, user, trail):
    phone = another_browser(app, logged_in_client)
    assert log_in(phone).status_code == 303
    trail.mark()

    assert post_from(logged_in_client, "/account", "/account/sessions/revoke-others").status_code == 303

    event = trail.one_new(Kind.SESSION_REVOKED)
    assert (event.user_id, event.detail) == (user.id, {"others": True})


def test_a_password_change_on_the_account_page_is_recorded(logged_in_client, user, trail):
    trail.mark()

    response = post_from(
        logged_in_client, "/account", "/account/password",
        current_password=PASSWORD, new_password=NEW_PASSWORD, new_password_confirm=NEW_PASSWORD,
    )
    assert response.status_code == 303

    event = trail.one_new(Kind.PASSWORD_CHANGED)
    assert (event.user_id, event.detail) == (user.id, {"via": "account"})
    assert_from_this_browser(event)


def test_a_refused_password_change_records_only_the_wrong_current_password(logged_in_client, trail):
    # A wrong current password is a guess at the password (issue 12): recorded like a failed
    # login; no password change is recorded.
    trail.mark()

    response = post_from(
        logged_in_client, "/account", "/account/password",
        current_password=WRONG_PASSWORD, new_password=NEW_PASSWORD, new_password_confirm=NEW_PASSWORD,
    )

    assert response.status_code == 400
    event = trail.one_new(Kind.LOGIN_FAILED)
    assert event.detail["reason"] == "wrong_current_password"


def test_set_password_from_the_command_line_is_recorded(run_cli, client, user, trail):
    result = run_cli("set-password", "alice", "--password-stdin", stdin=NEW_PASSWORD + "\n")
    assert result.returncode == 0, result.stderr

    event = trail.one_new(Kind.PASSWORD_CHANGED)
    assert (event.user_id, event.detail) == (user.id, {"via": "cli"})
    assert (event.ip, event.user_agent) == (None, None)


# Password resets

def test_a_reset_request_for_an_account_is_recorded(client, site, settings, make_user, trail):
    alice = make_user("alice", email=ALICE_EMAIL)

    assert post_from(client, "/auth/reset", "/auth/reset", login="alice").status_code == 200
    client.portal.call(site.mailer.wait_until_sent)

    event = trail.one_new(Kind.RESET_REQUESTED)
    assert (event.user_id, event.detail) == (alice.id, {"sent": True})
    assert_from_this_browser(event)
    assert len(outbox(settings)) == 1


@pytest.mark.parametrize("login", ["nobody", "nobody@example.com"])
def test_a_reset_request_for_an_unknown_login_is_recorded_without_mail(client, site, settings, user, trail, login):
    assert post_from(client, "/auth/reset", "/auth/reset", login=login).status_code == 200
    client.portal.call(site.mailer.wait_until_sent)

    event = trail.one_new(Kind.RESET_REQUESTED)
    assert (event.user_id, event.username, event.detail) == (None, login, {"sent": False})
    assert_from_this_browser(event)
    assert outbox(settings) == []


def test_a_used_reset_link_is_recorded(client, site, settings, make_user, trail):
    alice = make_user("alice", email=ALICE_EMAIL)
    post_from(client, "/auth/reset", "/auth/reset", login="alice")
    client.portal.call(site.mailer.wait_until_sent)
    mail = email.message_from_bytes(outbox(settings)[0].read_bytes(), policy=email.policy.default)
    token = re.search(r"/auth/reset/([A-Za-z0-9_-]+)", mail.get_body(("plain",)).get_content()).group(1)
    trail.mark()

    response = post_from(
        client, "/auth/reset", f"/auth/reset/{token}", password=NEW_PASSWORD, password_confirm=NEW_PASSWORD
    )
    assert response.status_code == 303

    event = trail.one_new(Kind.RESET_USED)
    assert event.user_id == alice.id
    assert_from_this_browser(event)


# New accounts

def test_signing_up_records_one_user_created_event(client, run_db, trail):
    data = {"username": "carol", "password": PASSWORD, "password_confirm": PASSWORD}
    assert post_from(client, "/auth/register", "/auth/register", **data).status_code == 303

    event = trail.one_new(Kind.USER_CREATED)
    assert (event.user_id, event.detail) == (find(run_db, "carol").id, {"via": "signup"})
    assert_from_this_browser(event)


def test_create_user_from_the_command_line_is_recorded(run_cli, client, run_db, trail):
    result = run_cli("create-user", "carol", "--password-stdin", stdin=PASSWORD + "\n")
    assert result.returncode == 0, result.stderr

    event = trail.one_new(Kind.USER_CREATED)
    assert (event.user_id, event.detail) == (find(run_db, "carol").id, {"via": "cli"})


def test_the_admin_bootstrap_at_start_is_recorded_once(make_settings):
    settings = make_settings(admin_username="root", admin_password=NEW_PASSWORD)

    for _start in range(2):
        app = create_app(settings)
        with TestClient(app, follow_redirects=False) as started:
            site = app.state.authsite
            rows = started.portal.call(all_events, site)

    assert [(row.kind, row.detail) for row in rows] == [(Kind.USER_CREATED, {"via": "AUTHSITE_ADMIN_USERNAME"})]
    assert rows[0].user_id is not None


async def all_events(site) -> list[AuthEvent]:
    async with site.database.sessionmaker() as db:
        return await all_events_in(db)


async def all_events_in(db) -> list[AuthEvent]:
    return list((await db.exec(select(AuthEvent).order_by(col(AuthEvent.id)))).all())


# What admins do

def test_a_permission_change_records_before_after_and_the_admin(admin, logged_in_client, user, run_db, trail):
    trail.mark()

    assert save_user(admin, user.id, ["authenticated", "reports"]).status_code == 303

    event = trail.one_new(Kind.SCOPES_CHANGED)
    assert event.user_id == user.id
    assert event.actor_id == find(run_db, "ada").id
    assert event.detail == {"before": ["authenticated"], "after": ["authenticated", "reports"]}


def test_saving_a_user_unchanged_records_nothing(admin, user, trail):
    trail.mark()

    assert save_user(admin, user.id, ["authenticated"]).status_code == 303

    assert trail.new() == []


def test_deactivating_and_reactivating_are_recorded_with_the_admin(admin, user, run_db, trail):
    ada = find(run_db, "ada")
    trail.mark()

    save_user(admin, user.id, ["authenticated"], active="false")
    deactivated = trail.one_new(Kind.DEACTIVATED)
    save_user(admin, user.id, ["authenticated"], active="true")
    activated = trail.one_new(Kind.ACTIVATED)

    assert (deactivated.user_id, deactivated.actor_id) == (user.id, ada.id)
    assert (activated.user_id, activated.actor_id) == (user.id, ada.id)


def test_an_admin_ending_sessions_or_making_a_reset_link_is_recorded(admin, user, run_db, trail):
    ada = find(run_db, "ada")
    trail.mark()

    admin.post(f"/admin/users/{user.id}/revoke-sessions", data={"csrf_token": form_token(admin, "/account")})
    revoked = trail.one_new(Kind.SESSION_REVOKED)
    admin.post(f"/admin/users/{user.id}/reset-link", data={"csrf_token": form_token(admin, "/account")})
    reset = trail.one_new(Kind.RESET_REQUESTED)

    assert (revoked.user_id, revoked.actor_id) == (user.id, ada.id)
    assert (reset.user_id, reset.actor_id, reset.detail) == (user.id, ada.id, {"via": "admin"})


# Reading the log

def test_the_account_page_shows_the_users_own_recent_events(client, user):
    assert log_in(client, "alice", WRONG_PASSWORD).status_code == 401
    assert log_in(client).status_code == 303

    shown = EVENT_WHAT.findall(client.get("/account").text)

    assert shown == ["Logged in", "Failed login (wrong password)"]


def test_the_account_page_never_shows_another_users_events(app, client, user, make_user):
    make_user("bob", email="bob@example.com")
    bobs_browser = another_browser(app, client)
    assert log_in(bobs_browser, "bob", WRONG_PASSWORD).status_code == 401
    assert post_from(bobs_browser, "/auth/reset", "/auth/reset", login="bob").status_code == 200
    assert log_in(bobs_browser, "bob").status_code == 303
    assert log_in(client).status_code == 303

    shown = EVENT_WHAT.findall(client.get("/account").text)

    assert shown == ["Logged in"]


def events_table(response) -> list[tuple[str, str]]:
    """(what, whose account) for each row of /admin/events, newest first."""
    assert response.status_code == 200, response.text
    rows = EVENT_ROW.findall(response.text)
    return [(html.unescape(what), html.unescape(TAG.sub("", account)).strip()) for what, account in rows]


def older_link(response) -> str | None:
    match = OLDER_LINK.search(response.text)
    return html.unescape(match.group(1)) if match else None


@pytest.fixture
def some_history(app, client, user, make_user):
    """alice logs in after one wrong password, bob logs in, someone tries "Mallory"."""
    make_user("bob")
    assert log_in(client, "alice", WRONG_PASSWORD).status_code == 401
    assert log_in(client).status_code == 303
    assert log_in(another_browser(app, client), "bob").status_code == 303
    assert log_in(another_browser(app, client), "Mallory").status_code == 401


def test_the_admin_audit_log_lists_everyones_events_newest_first(admin, some_history):
    rows = events_table(admin.get("/admin/events"))

    assert rows == [
        ("Failed login (unknown user)", "Mallory"),
        ("Logged in", "bob"),
        ("Logged in", "alice"),
        ("Failed login (wrong password)", "alice"),
        ("Logged in", "ada"),
    ]


def test_the_admin_audit_log_filters_by_kind(admin, some_history):
    rows = events_table(admin.get("/admin/events", params={"kind": "login_failed"}))

    assert rows == [("Failed login (unknown user)", "Mallory"), ("Failed login (wrong password)", "alice")]


@pytest.mark.parametrize("name", ["alice", "ALICE"])
def test_the_admin_audit_log_filters_by_username(admin, some_history, name):
    rows = events_table(admin.get("/admin/events", params={"user": name}))

    assert rows == [("Logged in", "alice"), ("Failed login (wrong password)", "alice")]


# Usernames are compared case-insensitively everywhere else; attempts on a name
# that has no account must be found however the attacker capitalised it.
@pytest.mark.parametrize("name", ["Mallory", "mallory"])
def test_the_admin_audit_log_finds_attempts_on_a_name_without_an_account(admin, some_history, name):
    rows = events_table(admin.get("/admin/events", params={"user": name}))

    assert rows == [("Failed login (unknown user)", "Mallory")]


def test_an_unknown_kind_filter_shows_everything_rather_than_failing(admin, some_history):
    response = admin.get("/admin/events", params={"kind": "<script>"})

    assert len(events_table(response)) == 5
    assert "<script>" not in response.text


def insert_failures(run_db, count: int) -> None:
    async def insert(db):
        db.add_all(
            AuthEvent(
                kind=Kind.LOGIN_FAILED, username=f"probe{i:03d}", ip="203.0.113.9", detail={"reason": "unknown_user"}
            )
            for i in range(count)
        )
        await db.commit()

    run_db(insert)


def test_the_admin_audit_log_pages_back_with_older(admin, run_db):
    insert_failures(run_db, 60)

    first = admin.get("/admin/events")
    second = admin.get(older_link(first))

    accounts = [account for _, account in events_table(first) + events_table(second)]
    assert len(events_table(first)) == 50
    assert accounts == [f"probe{i:03d}" for i in reversed(range(60))] + ["ada"]
    assert older_link(second) is None


def test_paging_back_keeps_the_filter(admin, run_db):
    insert_failures(run_db, 60)

    first = admin.get("/admin/events", params={"kind": "login_failed"})
    second = admin.get(older_link(first))

    assert len(events_table(first)) == 50
    assert [account for _, account in events_table(second)] == [f"probe{i:03d}" for i in reversed(range(10))]


# Pruning

def move_back_in_time(run_db, event_id: int, by: timedelta) -> None:
    async def shift(db):
        await db.exec(update(AuthEvent).where(col(AuthEvent.id) == event_id).values(created_at=utcnow() - by))
        await db.commit()

    run_db(shift)


def test_the_retention_setting_defaults_to_90_days_and_reads_the_environment(monkeypatch):
    assert Settings(_env_file=None).audit_retention_days == 90

    monkeypatch.setenv("AUTHSITE_AUDIT_RETENTION_DAYS", "30")

    assert Settings(_env_file=None).audit_retention_days == 30


def test_events_older_than_the_retention_are_pruned_and_newer_ones_stay(app, client, user, site, run_db, trail):
    assert log_in(client).status_code == 303
    assert log_in(another_browser(app, client)).status_code == 303
    old, recent = trail.new()
    # The default retention is 90 days.
    move_back_in_time(run_db, old.id, timedelta(days=90, hours=1))
    move_back_in_time(run_db, recent.id, timedelta(days=89))

    retention = timedelta(days=site.settings.audit_retention_days)
    pruned = run_db(lambda db: events.prune_events(db=db, older_than=retention))

    assert pruned == 1
    assert [row.id for row in run_db(lambda db: all_events_in(db))] == [recent.id]


def test_the_running_site_prunes_old_events_by_itself(client, user, make_settings, run_db, trail):
    assert log_in(client).status_code == 303
    old = trail.one_new(Kind.LOGIN)
    move_back_in_time(run_db, old.id, timedelta(days=31))

    app = create_app(make_settings(audit_retention_days=30))
    with TestClient(app) as restarted:
        site = app.state.authsite
        # The purge task starts with the site; give it a moment to run once.
        deadline = time.monotonic() + 5
        while restarted.portal.call(all_events, site) and time.monotonic() < deadline:
            time.sleep(0.02)
        remaining = restarted.portal.call(all_events, site)

    assert remaining == []


# A broken audit log

def break_the_audit_log(how: str, site, run_db, monkeypatch) -> None:
    if how == "the write fails":
        # The audit insert goes to a table that is not there; everything else works.
        gone = table("audit_gone", *(column(name) for name in AuthEvent.__table__.c.keys()))
        monkeypatch.setattr(events, "_INSERT", insert(gone))
    else:
        async def drop(db):
            await db.exec(text("DROP TABLE auth_event"))
            await db.commit()

        run_db(drop)


@pytest.mark.parametrize("how", ["the write fails", "table dropped"])
def test_a_broken_audit_log_never_fails_a_login(client, user, site, run_db, monkeypatch, caplog, how):
    break_the_audit_log(how, site, run_db, monkeypatch)

    with caplog.at_level(logging.INFO, logger="authsite.audit"):
        response = log_in(client)

    assert response.status_code == 303
    assert client.get("/api/me").json()["username"] == "alice"
    failures = [r for r in caplog.records if r.name == "authsite.audit" and r.levelno >= logging.ERROR]
    assert len(failures) == 1
    assert failures[0].fields["event"] == "login"


@pytest.mark.parametrize("how", ["the write fails", "table dropped"])
def test_a_broken_audit_log_never_fails_other_requests(client, user, site, run_db, monkeypatch, how):
    break_the_audit_log(how, site, run_db, monkeypatch)

    assert log_in(client, "alice", WRONG_PASSWORD).status_code == 401
    assert post_from(client, "/auth/reset", "/auth/reset", login="nobody").status_code == 200
    data = {"username": "carol", "password": PASSWORD, "password_confirm": PASSWORD}
    assert post_from(client, "/auth/register", "/auth/register", **data).status_code == 303
    assert client.get("/api/me").json()["username"] == "carol"
    assert post_from(client, "/auth/logout", "/auth/logout").status_code == 303


# Log lines

def test_each_event_is_one_log_line_without_passwords_tokens_or_hashes(app, client, user, site, run_db, caplog):
    caplog.set_level(logging.INFO, logger="authsite.audit")
    assert log_in(client, "alice", WRONG_PASSWORD).status_code == 401
    assert log_in(client).status_code == 303
    token = client.cookies["session"]
    post_from(
        client, "/account", "/account/password",
        current_password=PASSWORD, new_password=NEW_PASSWORD, new_password_confirm=NEW_PASSWORD,
    )
    reset_page = admin_reset_link(app, client, run_db, user)
    reset_token = re.search(r"/auth/reset/([A-Za-z0-9_-]+)", reset_page).group(1)
    secrets = {
        "password": PASSWORD, "wrong password": WRONG_PASSWORD, "new password": NEW_PASSWORD,
        "session token": token, "session token hash": tokens.hash_token(token),
        "new session token": client.cookies["session"],
        "password hash": find(run_db, "alice").password_hash, "old password hash": user.password_hash,
        "reset token": reset_token, "reset token hash": tokens.hash_token(reset_token),
    }

    records = [r for r in caplog.records if r.name == "authsite.audit"]
    stored = run_db(lambda db: all_events_in(db))
    assert [r.fields["event"] for r in records] == [row.kind for row in stored]
    for record in records:
        line = json.dumps(record.fields, default=str) + record.getMessage()
        leaked = [name for name, secret in secrets.items() if secret in line]
        assert leaked == [], (leaked, record.fields)


def admin_reset_link(app, client, run_db, user) -> str:
    """The page an admin sees after making a reset link for `user`."""

    async def promote(db):
        ada = await db.get(User, user.id)
        ada.scopes = ["authenticated", "super"]
        db.add(ada)
        await db.commit()

    # alice is her own super user here, which spares another login's hashing.
    run_db(promote)
    response = client.post(f"/admin/users/{user.id}/reset-link", data={"csrf_token": form_token(client, "/account")})
    assert response.status_code == 200, response.text
    return response.text
