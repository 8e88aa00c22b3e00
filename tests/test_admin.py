"""The admin pages under /admin: who may use them, finding users among many, changing
permissions and status, ending sessions, reset links; and the rules that keep a site
from losing its last super user or letting an admin take over a fellow admin."""

import asyncio
import html
import re
from urllib.parse import quote

import httpx2
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, insert, update
from sqlmodel import select

from authsite.events import Kind
from authsite.models import PasswordReset, Session, User, utcnow
from support import PASSWORD, csrf_from, form_token, log_in, statements_sent

NEW_PASSWORD = "new password 456"
USER_LINK = re.compile(r'<td data-label="Username"><a href="/admin/users/(\d+)">([^<]+)</a>')
NEXT_PAGE = re.compile(r'href="(/admin/users\?[^"]*)"[^>]*>\s*Next page')
RESET_LINK = re.compile(r'value="(https?://[^"]+/auth/reset/([A-Za-z0-9_-]+))"')
CSRF_VALUE = re.compile(r'name="csrf_token" value="[^"]*"')
SCOPE_BOX = re.compile(r'<input [^>]*name="scopes" type="checkbox" value="([^"]+)"[^>]*>')
PERMISSIONS_CELL = re.compile(
    r'>([^<]+)</a></td>\s*<td data-label="Email">[^<]*</td>\s*<td data-label="Permissions">(.*?)</td>')
EVENT_OPTION = re.compile(r'<option value="([^"]*)"[^>]*>([^<]*)</option>')
NO_SUCH_ID = 987654
# A plain admin may hand out `reports` (AUTHSITE_ADMIN_GRANTABLE_SCOPES); `billing` and every
# other scope are for super users.
GRANTABLE = "reports"

GET_PAGES = ["/admin/users", "/admin/users/{id}", "/admin/events"]
POST_ACTIONS = ["/admin/users/{id}", "/admin/users/{id}/revoke-sessions", "/admin/users/{id}/reset-link"]
EVERY_ROUTE = [("GET", path) for path in GET_PAGES] + [("POST", path) for path in POST_ACTIONS]
ROUTES_WITH_AN_ID = [("GET", "/admin/users/{id}")] + [("POST", path) for path in POST_ACTIONS]


@pytest.fixture
def settings(make_settings):
    return make_settings(admin_grantable_scopes=GRANTABLE)


def another_browser(app, client) -> TestClient:
    """A second browser on the same running site: its own cookies, the app's own event loop."""
    other = TestClient(app, base_url="http://testserver", follow_redirects=False)
    other.portal = client.portal
    return other


@pytest.fixture
def browser_of(app, client, make_user):
    """A new browser, logged in as a new user holding `scopes` (besides `authenticated`)."""

    def make(username: str, *scopes: str) -> TestClient:
        make_user(username, scopes=("authenticated", *scopes))
        browser = another_browser(app, client)
        assert log_in(browser, username).status_code == 303
        return browser

    return make


@pytest.fixture
def admin(browser_of) -> TestClient:
    return browser_of("ada", "admin")


@pytest.fixture
def superuser(browser_of) -> TestClient:
    return browser_of("root", "super")


@pytest.fixture
def alice(logged_in_client, user) -> User:
    """alice, logged in on `client`; the account the admins act on."""
    return user


def reload(run_db, user_id: int) -> User:
    return run_db(lambda db: db.get(User, user_id))


def find(run_db, username: str) -> User:
    return run_db(lambda db: _first(db, select(User).where(User.username == username)))


async def _first(db, statement):
    return (await db.exec(statement)).first()


def session_count(run_db, user_id: int) -> int:
    return run_db(lambda db: _first(db, select(func.count()).select_from(Session).where(Session.user_id == user_id)))


def reset_count(run_db, user_id: int) -> int:
    statement = select(func.count()).select_from(PasswordReset).where(PasswordReset.user_id == user_id)
    return run_db(lambda db: _first(db, statement))


def is_logged_in(browser: TestClient) -> bool:
    return browser.get("/api/me").status_code == 200


def token_of(browser: TestClient) -> str:
    # The token is bound to the visitor's session, so any of their forms gives it.
    return form_token(browser, "/account")


def save_user(browser, user_id, scopes=("authenticated",), active="true"):
    """Submit the user page's form as a browser would (the empty "Add a permission" box included)."""
    data = {"scopes": [*scopes, ""], "active": active, "csrf_token": token_of(browser)}
    return browser.post(f"/admin/users/{user_id}", data=data)


def post_action(browser, user_id, action: str):
    return browser.post(f"/admin/users/{user_id}/{action}", data={"csrf_token": token_of(browser)})


def send(browser, method: str, path: str):
    """A GET, or a POST with a valid token asking for the most a form could."""
    if method == "GET":
        return browser.get(path)
    data = {"scopes": ["authenticated", "admin", "super"], "active": "false", "csrf_token": token_of(browser)}
    return browser.post(path, data=data)


def without_tokens(page: str) -> str:
    # Every render masks the CSRF token afresh; the rest of the page must match.
    return CSRF_VALUE.sub("", page)


def listed(response) -> list[str]:
    assert response.status_code == 200, response.text
    return [html.unescape(name) for _, name in USER_LINK.findall(response.text)]


def next_page(response) -> str | None:
    match = NEXT_PAGE.search(response.text)
    return html.unescape(match.group(1)) if match else None


def insert_users(run_db, site, names: list[str]) -> None:
    """Many users at once: straight rows sharing one password hash, no per-user hashing."""
    password_hash = run_db(lambda db: site.hasher.hash(PASSWORD))
    now = utcnow()
    rows = [
        {
            "username": name, "username_key": name.casefold(), "email": f"{name}@example.org",
            "email_key": f"{name}@example.org".casefold(), "password_hash": password_hash,
            "scopes": ["authenticated"], "is_active": True, "info": {}, "created_at": now,
        }
        for name in names
    ]

    async def insert_in_chunks(db):
        connection = await db.connection()
        for start in range(0, len(rows), 10_000):
            await connection.execute(insert(User.__table__), rows[start:start + 10_000])
        await db.commit()

    run_db(insert_in_chunks)


# Who may come in

def test_an_anonymous_visitor_is_sent_to_log_in_from_every_page(app, client, alice):
    stranger = another_browser(app, client)

    for path in GET_PAGES:
        response = stranger.get(path.format(id=alice.id))

        assert response.status_code == 303, path
        assert response.headers["location"] == "/auth/login?next=" + quote(path.format(id=alice.id), safe="")


def test_an_anonymous_post_is_sent_to_log_in_and_changes_nothing(app, client, alice, run_db):
    stranger = another_browser(app, client)

    for path in POST_ACTIONS:
        response = stranger.post(path.format(id=alice.id), data={"scopes": ["admin"], "active": "false"})

        assert response.status_code == 303, path
        assert response.headers["location"].startswith("/auth/login")
    assert reload(run_db, alice.id).scopes == ["authenticated"]
    assert reload(run_db, alice.id).is_active
    assert is_logged_in(client)
    assert reset_count(run_db, alice.id) == 0


def test_a_user_without_admin_gets_403_everywhere_even_with_a_valid_csrf_token(browser_of, alice, run_db):
    reporter = browser_of("rita", "reports")

    for method, path in EVERY_ROUTE:
        response = send(reporter, method, path.format(id=alice.id))

        assert response.status_code == 403, (method, path)
        assert "admin" in response.text
        assert "alice" not in response.text
    assert reload(run_db, alice.id).scopes == ["authenticated"]
    assert reload(run_db, alice.id).is_active
    assert session_count(run_db, alice.id) == 1
    assert reset_count(run_db, alice.id) == 0


def test_a_user_without_admin_cannot_tell_which_user_ids_exist(browser_of, alice):
    reporter = browser_of("rita", "reports")

    for method, path in ROUTES_WITH_AN_ID:
        existing = send(reporter, method, path.format(id=alice.id))
        missing = send(reporter, method, path.format(id=NO_SUCH_ID))

        assert existing.status_code == missing.status_code == 403, (method, path)
        assert without_tokens(existing.text) == without_tokens(missing.text)


@pytest.mark.parametrize("scope", ["admin", "super"])
def test_admin_and_super_users_both_get_in(browser_of, alice, scope):
    staff = browser_of("staff", scope)

    for path in GET_PAGES:
        response = staff.get(path.format(id=alice.id))

        assert response.status_code == 200, path
        assert "alice" in response.text
        assert "no-store" in response.headers["cache-control"]


# Finding users

def test_the_list_shows_every_user_with_email_and_permissions(admin, make_user):
    make_user("bob", email="bob@example.com", scopes=("authenticated", "reports"))

    response = admin.get("/admin/users")

    assert listed(response) == ["ada", "bob"]
    assert "bob@example.com" in response.text
    assert "reports" in response.text


def test_the_list_shows_only_the_permissions_beyond_authenticated(admin, make_user):
    make_user("bob", scopes=("authenticated", "reports"))
    make_user("cee")

    rows = dict(PERMISSIONS_CELL.findall(admin.get("/admin/users").text))

    assert rows["bob"].strip() == '<span class="tag">reports</span>'
    assert rows["cee"].strip() == "—"
    assert rows["ada"].strip() == '<span class="tag">admin</span>'


def test_the_audit_filter_names_each_kind_of_event_in_words(admin):
    options = dict(EVENT_OPTION.findall(admin.get("/admin/events").text))

    assert options["login_failed"] == "Failed login"
    assert options["scopes_changed"] == "Permissions changed"
    assert set(options) == {"", *(kind.value for kind in Kind)}
    assert not [label for label in options.values() if "_" in label]


def test_search_finds_users_whose_name_starts_with_the_query_in_any_case(admin, run_db, site):
    insert_users(run_db, site, ["bob", "Bobby", "abbot", "carol"])

    for query in ("bo", "BO", " Bob "):
        assert listed(admin.get("/admin/users", params={"q": query})) == ["bob", "Bobby"], query


def test_search_finds_users_whose_email_starts_with_the_query_in_any_case(admin, make_user):
    make_user("cee", email="Carol@Example.com")
    make_user("dee", email="dora@example.com")

    for query in ("carol@", "CAROL@EX", "Carol@Example.COM"):
        assert listed(admin.get("/admin/users", params={"q": query})) == ["cee"], query


def test_a_search_matching_nobody_says_so(admin, make_user):
    make_user("bob")

    response = admin.get("/admin/users", params={"q": "zed"})

    assert listed(response) == []
    assert "No users match" in response.text


def test_the_list_pages_fifty_users_at_a_time_with_a_working_next_link(admin, run_db, site):
    members = [f"member{i:03d}" for i in range(120)]
    insert_users(run_db, site, members)
    everyone = ["ada", *members]

    pages, url = [], "/admin/users"
    while url:
        response = admin.get(url)
        pages.append(listed(response))
        url = next_page(response)

    assert [len(page) for page in pages] == [50, 50, 21]
    assert [name for page in pages for name in page] == everyone


def test_search_results_page_with_the_query_kept(admin, run_db, site):
    insert_users(run_db, site, [f"member{i:03d}" for i in range(120)] + [f"other{i:03d}" for i in range(30)])

    first = admin.get("/admin/users", params={"q": "MEMBER"})
    second = admin.get(next_page(first))
    third = admin.get(next_page(second))

    assert listed(first)[0] == "member000"
    assert listed(second)[0] == "member050"
    assert listed(third) == [f"member{i:03d}" for i in range(100, 120)]
    assert next_page(third) is None


def test_the_user_page_shows_the_account(admin, make_user):
    bob = make_user("bob", email="bob@example.com", scopes=("authenticated", "reports"))

    response = admin.get(f"/admin/users/{bob.id}")

    assert response.status_code == 200
    assert "<h1>bob</h1>" in response.text
    assert "bob@example.com" in response.text
    assert 'value="reports" checked' in response.text


# Changing permissions

def test_an_admin_adds_a_custom_permission(admin, alice, run_db):
    response = save_user(admin, alice.id, ["authenticated", "reports"])

    assert response.status_code == 303
    assert response.headers["location"] == f"/admin/users/{alice.id}"
    assert reload(run_db, alice.id).scopes == ["authenticated", "reports"]


def test_an_admin_removes_a_custom_permission(admin, make_user, run_db):
    bob = make_user("bob", scopes=("authenticated", "reports", "billing"))

    assert save_user(admin, bob.id, ["authenticated", "billing"]).status_code == 303

    assert reload(run_db, bob.id).scopes == ["authenticated", "billing"]


def test_authenticated_is_kept_even_when_not_sent(admin, alice, run_db):
    assert save_user(admin, alice.id, ["reports"]).status_code == 303

    assert set(reload(run_db, alice.id).scopes) == {"authenticated", "reports"}


def test_an_admin_cannot_grant_admin_or_super(admin, alice, run_db):
    for scope in ("admin", "super"):
        response = save_user(admin, alice.id, ["authenticated", scope])

        assert response.status_code == 403, scope
        assert "super" in response.text
    assert reload(run_db, alice.id).scopes == ["authenticated"]


def test_an_admin_cannot_remove_admin_or_super(admin, make_user, run_db):
    for scope in ("admin", "super"):
        colleague = make_user(f"cole-{scope}", scopes=("authenticated", scope))

        response = save_user(admin, colleague.id, ["authenticated"])

        assert response.status_code == 403, scope
        assert reload(run_db, colleague.id).scopes == ["authenticated", scope]


def test_an_admin_cannot_give_themselves_super(admin, run_db):
    ada = find(run_db, "ada")

    response = save_user(admin, ada.id, ["authenticated", "admin", "super"])

    assert response.status_code == 403
    assert reload(run_db, ada.id).scopes == ["authenticated", "admin"]


def test_a_super_user_grants_admin_and_super(superuser, alice, run_db):
    assert save_user(superuser, alice.id, ["authenticated", "admin", "super"]).status_code == 303

    assert set(reload(run_db, alice.id).scopes) == {"authenticated", "admin", "super"}


def test_a_super_user_removes_admin_from_an_admin(superuser, make_user, run_db):
    colleague = make_user("cole", scopes=("authenticated", "admin"))

    assert save_user(superuser, colleague.id, ["authenticated"]).status_code == 303

    assert reload(run_db, colleague.id).scopes == ["authenticated"]


def test_a_new_permission_applies_on_the_users_very_next_request(admin, alice, client):
    assert client.get("/api/me").json()["scopes"] == ["authenticated"]

    save_user(admin, alice.id, ["authenticated", "reports"])

    assert client.get("/api/me").json()["scopes"] == ["authenticated", "reports"]


def test_a_removed_admin_permission_locks_them_out_on_their_next_request(superuser, admin, run_db):
    assert admin.get("/admin/users").status_code == 200

    save_user(superuser, find(run_db, "ada").id, ["authenticated"])

    assert admin.get("/admin/users").status_code == 403


def test_an_invalid_permission_name_is_refused_with_a_message(admin, alice, run_db):
    for scope in ("two words", 'say"hi', "x" * 70, "Reports", "<b>"):
        # Sent beside a valid new one: nothing of the form is applied.
        response = save_user(admin, alice.id, ["authenticated", "reports", scope])

        assert response.status_code == 400, scope
        assert "not a valid permission name" in response.text
    assert reload(run_db, alice.id).scopes == ["authenticated"]


def test_active_must_be_true_or_false(admin, alice, run_db):
    for active in ("maybe", "", "TRUE", "1"):
        response = save_user(admin, alice.id, ["authenticated", "reports"], active=active)

        assert response.status_code == 400, active
        assert "must be true or false" in response.text
    assert reload(run_db, alice.id).scopes == ["authenticated"]
    assert reload(run_db, alice.id).is_active


# Deactivating, ending sessions, reset links

def test_deactivating_a_user_ends_their_sessions_at_once(admin, alice, client, run_db):
    assert is_logged_in(client)

    assert save_user(admin, alice.id, active="false").status_code == 303

    assert not is_logged_in(client)
    assert session_count(run_db, alice.id) == 0
    assert not reload(run_db, alice.id).is_active


def test_a_deactivated_user_cannot_log_in(admin, alice, client):
    save_user(admin, alice.id, active="false")
    client.cookies.clear()

    assert log_in(client).status_code == 401


def test_reactivating_a_user_lets_them_log_in_again(admin, alice, client):
    save_user(admin, alice.id, active="false")
    client.cookies.clear()

    assert save_user(admin, alice.id, active="true").status_code == 303

    assert log_in(client).status_code == 303
    assert is_logged_in(client)


def test_revoking_sessions_ends_every_session_of_the_user(app, admin, alice, client, run_db):
    phone = another_browser(app, client)
    assert log_in(phone).status_code == 303

    response = post_action(admin, alice.id, "revoke-sessions")

    assert response.status_code == 303
    assert response.headers["location"] == f"/admin/users/{alice.id}"
    assert not is_logged_in(client)
    assert not is_logged_in(phone)
    assert session_count(run_db, alice.id) == 0
    assert is_logged_in(admin)


def test_the_reset_link_page_is_neither_cached_nor_passed_on(admin, alice):
    response = post_action(admin, alice.id, "reset-link")

    assert response.status_code == 200
    assert response.headers["referrer-policy"] == "strict-origin"
    assert "no-store" in response.headers["cache-control"]
    assert RESET_LINK.search(response.text)


def test_a_reset_link_from_an_admin_works_once(app, admin, alice, client, settings):
    link, token = RESET_LINK.search(post_action(admin, alice.id, "reset-link").text).groups()
    assert link.startswith(settings.public_url)
    visitor = another_browser(app, client)

    def choose_password():
        data = {"password": NEW_PASSWORD, "password_confirm": NEW_PASSWORD,
                "csrf_token": form_token(visitor, "/auth/reset")}
        return visitor.post(f"/auth/reset/{token}", data=data)

    assert visitor.get(f"/auth/reset/{token}").status_code == 200
    assert choose_password().status_code == 303
    assert choose_password().status_code == 400
    assert log_in(visitor, "alice", NEW_PASSWORD).status_code == 303


def test_no_reset_link_for_a_deactivated_account(admin, make_user, run_db):
    bob = make_user("bob", active=False)

    response = post_action(admin, bob.id, "reset-link")

    assert response.status_code == 400
    assert "deactivated" in response.text
    assert reset_count(run_db, bob.id) == 0


@pytest.mark.parametrize("scope", ["admin", "super"])
def test_an_admin_cannot_deactivate_log_out_or_reset_an_account_holding_admin_or_super(
    browser_of, admin, run_db, scope
):
    # A reset link or a deactivation would hand one admin another's account.
    colleague_browser = browser_of("cole", scope)
    colleague = find(run_db, "cole")

    attempts = {
        "deactivate": save_user(admin, colleague.id, ["authenticated", scope], active="false"),
        "revoke-sessions": post_action(admin, colleague.id, "revoke-sessions"),
        "reset-link": post_action(admin, colleague.id, "reset-link"),
    }

    assert {name: response.status_code for name, response in attempts.items()} == dict.fromkeys(attempts, 403)
    assert reload(run_db, colleague.id).is_active
    assert is_logged_in(colleague_browser)
    assert reset_count(run_db, colleague.id) == 0


def test_a_super_user_can_log_out_reset_and_deactivate_an_admin(browser_of, superuser, run_db):
    colleague_browser = browser_of("cole", "admin")
    colleague = find(run_db, "cole")

    assert post_action(superuser, colleague.id, "revoke-sessions").status_code == 303
    assert not is_logged_in(colleague_browser)
    assert post_action(superuser, colleague.id, "reset-link").status_code == 200
    assert reset_count(run_db, colleague.id) == 1
    assert save_user(superuser, colleague.id, ["authenticated", "admin"], active="false").status_code == 303
    assert not reload(run_db, colleague.id).is_active


# A reset link made by an admin, checked again when it is used (item 14 of issue 12)

def admins_link_for(browser, user_id) -> str:
    return RESET_LINK.search(post_action(browser, user_id, "reset-link").text).group(2)


def link_is_live(app, client, token) -> bool:
    """Whether the link opens its form and sets a password, as its holder would find out."""
    visitor = another_browser(app, client)
    page = visitor.get(f"/auth/reset/{token}")
    data = {"password": NEW_PASSWORD, "password_confirm": NEW_PASSWORD, "csrf_token": form_token(visitor, "/auth/reset")}
    used = visitor.post(f"/auth/reset/{token}", data=data)
    assert (page.status_code, used.status_code) in ((200, 303), (400, 400)), (page.status_code, used.status_code)
    if page.status_code == 400:
        assert "invalid" in page.text and "invalid" in used.text
    return used.status_code == 303


def set_scopes_in_the_database(run_db, user_id, scopes) -> None:
    """As a host app's own code, or a hand-run UPDATE, would: no admin page involved."""

    async def write(db):
        await db.exec(update(User).where(User.id == user_id).values(scopes=scopes))
        await db.commit()

    run_db(write)


def test_an_admins_link_dies_when_a_super_makes_the_user_an_admin(app, client, admin, superuser, alice):
    token = admins_link_for(admin, alice.id)

    assert save_user(superuser, alice.id, ["authenticated", "admin"]).status_code == 303

    assert not link_is_live(app, client, token)


def test_an_admins_link_dies_when_the_user_gains_admin_by_any_route(app, client, admin, alice, run_db):
    token = admins_link_for(admin, alice.id)

    set_scopes_in_the_database(run_db, alice.id, ["authenticated", "admin"])

    assert not link_is_live(app, client, token)


def test_an_admins_link_dies_when_the_admin_loses_admin(app, client, admin, superuser, alice, run_db):
    token = admins_link_for(admin, alice.id)

    assert save_user(superuser, find(run_db, "ada").id, ["authenticated"]).status_code == 303

    assert not link_is_live(app, client, token)


def test_an_admins_link_dies_when_the_admin_is_deactivated(app, client, admin, superuser, alice, run_db):
    token = admins_link_for(admin, alice.id)

    assert save_user(superuser, find(run_db, "ada").id, ["authenticated", "admin"], active="false").status_code == 303

    assert not link_is_live(app, client, token)


def test_the_link_records_the_admin_who_made_it(admin, alice, run_db):
    admins_link_for(admin, alice.id)

    rows = run_db(lambda db: _all(db, select(PasswordReset.issued_by).where(PasswordReset.user_id == alice.id)))
    assert rows == [find(run_db, "ada").id]


async def _all(db, statement):
    return list((await db.exec(statement)).all())


def test_a_super_users_link_for_an_admin_still_works(app, client, superuser, make_user):
    colleague = make_user("cole", scopes=("authenticated", "admin"))
    token = admins_link_for(superuser, colleague.id)

    assert link_is_live(app, client, token)


def test_changing_a_users_permissions_voids_their_reset_links(app, client, admin, alice, run_db):
    token = admins_link_for(admin, alice.id)

    assert save_user(admin, alice.id, ["authenticated", "reports"]).status_code == 303

    assert reset_count(run_db, alice.id) == 0
    assert not link_is_live(app, client, token)


def test_a_link_does_not_come_back_when_the_account_is_reactivated(app, client, admin, alice, run_db):
    token = admins_link_for(admin, alice.id)

    assert save_user(admin, alice.id, active="false").status_code == 303
    assert save_user(admin, alice.id, active="true").status_code == 303

    assert reset_count(run_db, alice.id) == 0
    assert not link_is_live(app, client, token)


# The last super user
# (Nobody changes their own scopes any more (issue 12, item 15), so a super user steps down by
# deactivating themselves, or has another super, or the `set-scopes` command, take super away.)

def test_the_last_super_user_cannot_deactivate_themselves(superuser, run_db):
    root = find(run_db, "root")

    response = save_user(superuser, root.id, ["authenticated", "super"], active="false")

    assert response.status_code == 400
    assert "last super user" in response.text
    assert reload(run_db, root.id).is_active
    assert is_logged_in(superuser)


def test_a_super_user_can_deactivate_themselves_while_another_super_is_active(superuser, make_user, run_db):
    make_user("deputy", scopes=("authenticated", "super"))
    root = find(run_db, "root")

    response = save_user(superuser, root.id, ["authenticated", "super"], active="false")

    assert response.status_code == 303
    assert not reload(run_db, root.id).is_active


def test_a_deactivated_second_super_does_not_count(superuser, make_user, run_db):
    make_user("deputy", scopes=("authenticated", "super"), active=False)
    root = find(run_db, "root")

    response = save_user(superuser, root.id, ["authenticated", "super"], active="false")

    assert response.status_code == 400
    assert reload(run_db, root.id).is_active


def test_a_permission_merely_containing_super_does_not_count_as_super(superuser, make_user, run_db):
    make_user("deputy", scopes=("authenticated", "super-reports"))
    root = find(run_db, "root")

    response = save_user(superuser, root.id, ["authenticated", "super"], active="false")

    assert response.status_code == 400
    assert reload(run_db, root.id).is_active


# Own scopes, and what a plain admin may grant (item 15 of issue 12)

def scope_boxes(page: str) -> dict[str, bool]:
    """The permission checkboxes the page offers: scope -> whether it can be changed."""
    return {m.group(1): " disabled" not in m.group(0) for m in SCOPE_BOX.finditer(page)}


def test_an_admin_cannot_grant_itself_a_custom_scope(admin, run_db):
    ada = find(run_db, "ada")

    for scope in ("billing", "reports:write", "reports"):
        response = save_user(admin, ada.id, ["authenticated", "admin", scope])

        assert response.status_code == 403, scope
        assert "your own permissions" in response.text
    assert reload(run_db, ada.id).scopes == ["authenticated", "admin"]


def test_a_super_user_cannot_change_their_own_scopes_either(superuser, make_user, run_db):
    make_user("deputy", scopes=("authenticated", "super"))
    root = find(run_db, "root")

    for scopes in (["authenticated", "super", "billing"], ["authenticated"]):
        response = save_user(superuser, root.id, scopes)

        assert response.status_code == 403, scopes
        assert "your own permissions" in response.text
    assert reload(run_db, root.id).scopes == ["authenticated", "super"]


def test_an_admin_cannot_grant_a_scope_that_is_not_admin_grantable(admin, alice, run_db):
    for scope in ("billing", "reports:write"):
        response = save_user(admin, alice.id, ["authenticated", scope])

        assert response.status_code == 403, scope
        assert "super" in response.text
    assert reload(run_db, alice.id).scopes == ["authenticated"]


def test_an_admin_cannot_remove_a_scope_that_is_not_admin_grantable(admin, make_user, run_db):
    bob = make_user("bob", scopes=("authenticated", "billing"))

    response = save_user(admin, bob.id, ["authenticated"])

    assert response.status_code == 403
    assert reload(run_db, bob.id).scopes == ["authenticated", "billing"]


def test_an_admin_grants_a_grantable_scope_and_keeps_the_others(admin, make_user, run_db):
    bob = make_user("bob", scopes=("authenticated", "billing"))

    assert save_user(admin, bob.id, ["authenticated", "billing", "reports"]).status_code == 303

    assert reload(run_db, bob.id).scopes == ["authenticated", "billing", "reports"]


def test_a_super_user_grants_any_custom_scope(superuser, alice, run_db):
    assert save_user(superuser, alice.id, ["authenticated", "billing", "reports:write"]).status_code == 303

    assert reload(run_db, alice.id).scopes == ["authenticated", "billing", "reports:write"]


def test_the_page_offers_a_plain_admin_only_the_grantable_scopes(admin, make_user):
    bob = make_user("bob", scopes=("authenticated", "billing"))

    page = admin.get(f"/admin/users/{bob.id}").text

    assert scope_boxes(page) == {"admin": False, "super": False, "reports": True, "billing": False}
    assert 'id="new-scope"' not in page


def test_the_page_offers_a_super_user_every_scope_and_a_new_one(superuser, make_user):
    bob = make_user("bob", scopes=("authenticated", "billing"))

    page = superuser.get(f"/admin/users/{bob.id}").text

    assert scope_boxes(page) == {"admin": True, "super": True, "reports": True, "billing": True}
    assert 'id="new-scope"' in page


def test_your_own_page_shows_your_scopes_read_only(admin, run_db):
    page = admin.get(f"/admin/users/{find(run_db, 'ada').id}").text

    assert not any(scope_boxes(page).values())
    assert 'id="new-scope"' not in page
    assert "your own permissions" in page


# Unknown ids, CSRF

def test_an_unknown_user_id_is_404_for_an_admin(superuser):
    for method, path in ROUTES_WITH_AN_ID:
        assert send(superuser, method, path.format(id=NO_SUCH_ID)).status_code == 404, (method, path)


def test_an_impossible_user_id_is_never_a_server_error(superuser):
    for user_id in ("0", "-1", str(2**31), str(2**40), str(2**70), "abc", "1.5"):
        for method, path in ROUTES_WITH_AN_ID:
            response = send(superuser, method, path.format(id=user_id))

            assert response.status_code in (404, 422), (method, path, user_id)


def test_an_admin_post_without_csrf_token_is_refused_and_changes_nothing(superuser, alice, client, run_db):
    data = {"scopes": ["authenticated", "admin"], "active": "false"}

    for path in POST_ACTIONS:
        response = superuser.post(path.format(id=alice.id), data=data)

        assert response.status_code == 403, path
    assert reload(run_db, alice.id).scopes == ["authenticated"]
    assert reload(run_db, alice.id).is_active
    assert is_logged_in(client)
    assert reset_count(run_db, alice.id) == 0


def test_an_admin_post_from_another_site_is_refused(superuser, alice, client, run_db):
    data = {"scopes": ["authenticated", "admin"], "active": "false", "csrf_token": token_of(superuser)}

    for path in POST_ACTIONS:
        response = superuser.post(path.format(id=alice.id), data=data, headers={"Origin": "https://evil.example"})

        assert response.status_code == 403, path
    assert reload(run_db, alice.id).scopes == ["authenticated"]
    assert reload(run_db, alice.id).is_active
    assert is_logged_in(client)
    assert reset_count(run_db, alice.id) == 0


# With 100,000 users

def test_search_and_deep_pages_stay_index_walks_with_100000_users(admin, run_db, site, is_postgres):
    insert_users(run_db, site, [f"member{i:06d}" for i in range(100_000)])

    with statements_sent(site) as search_statements:
        search = admin.get("/admin/users", params={"q": "Member0500"})
    deep = admin.get("/admin/users", params={"after": "member099900"})
    with statements_sent(site) as deeper_statements:
        deeper = admin.get(next_page(deep))

    assert listed(search) == [f"member{i:06d}" for i in range(50_000, 50_050)]
    assert listed(admin.get(next_page(search))) == [f"member{i:06d}" for i in range(50_050, 50_100)]
    assert listed(deep) == [f"member{i:06d}" for i in range(99_901, 99_951)]
    assert listed(deeper) == [f"member{i:06d}" for i in range(99_951, 100_000)]
    assert next_page(deeper) is None
    for statements in (search_statements, deeper_statements):
        # The visitor's session lookup, then one bounded query for the page.
        user_queries = [(sql, params) for sql, params in statements if "LIMIT" in sql.upper()]
        assert len(user_queries) == 1, statements
        assert len(statements) <= 3, statements
        sql, params = user_queries[0]
        # Keyset paging: however deep the page, no rows are skipped over.
        assert "OFFSET" not in sql.upper() or params[-1] == 0, (sql, params)
    search_sql, search_params = [s for s in search_statements if "LIMIT" in s[0].upper()][0]
    plan = query_plan(run_db, search_sql, search_params, is_postgres)
    if is_postgres:
        assert "Seq Scan" not in plan, plan
        assert "Index" in plan, plan
    else:
        assert "SEARCH user USING INDEX ix_user_username_key" in plan, plan
        assert "SEARCH user USING INDEX ix_user_email_key" in plan, plan
        assert "SCAN user" not in plan, plan


def query_plan(run_db, sql: str, params, is_postgres: bool) -> str:
    async def explain(db):
        connection = await db.connection()
        prefix = "EXPLAIN " if is_postgres else "EXPLAIN QUERY PLAN "
        rows = (await connection.exec_driver_sql(prefix + sql, tuple(params))).all()
        return "\n".join(str(row[0] if is_postgres else row[-1]) for row in rows)

    return run_db(explain)


# Two supers at the same instant (item 12 of issue 12)

RACE_ROUNDS = 4


async def _logged_in_browser(app, username: str):
    browser = httpx2.AsyncClient(transport=httpx2.ASGITransport(app=app), base_url="http://testserver")
    page = await browser.get("/auth/login")
    data = {"username": username, "password": PASSWORD, "csrf_token": csrf_from(page.text)}
    assert (await browser.post("/auth/login", data=data)).status_code == 303
    return browser


def supers_acting_on_each_other_at_once(app, client, make_user, run_db, form_for):
    """Each round: two fresh supers, each submitting `form_for(other)` on the other's page at the
    same instant. Returns per round the two answers and the two accounts as they end up."""
    rounds = []
    for i in range(RACE_ROUNDS):
        names = (f"root{i}a", f"root{i}b")
        ids = [make_user(name, scopes=("authenticated", "super")).id for name in names]

        async def race():
            browsers = [await _logged_in_browser(app, name) for name in names]
            try:
                forms = []
                for browser, target in zip(browsers, reversed(ids)):
                    page = await browser.get(f"/admin/users/{target}")
                    forms.append({**form_for(target), "csrf_token": csrf_from(page.text)})
                return await asyncio.gather(
                    *(browser.post(f"/admin/users/{target}", data=form)
                      for browser, target, form in zip(browsers, reversed(ids), forms))
                )
            finally:
                for browser in browsers:
                    await browser.aclose()

        answers = client.portal.call(race)
        rounds.append((answers, [reload(run_db, user_id) for user_id in ids]))
    return rounds


def active_supers(accounts) -> list[str]:
    return [a.username for a in accounts if a.is_active and "super" in a.scopes]


def outcome(answer, target_id: int) -> str:
    """"done", or how the change was refused: by the rules ("refused: <message>"), or because
    the other change had already logged this super out ("logged out")."""
    if answer.status_code == 303 and answer.headers["location"] == f"/admin/users/{target_id}":
        return "done"
    if answer.status_code == 303 and answer.headers["location"].startswith("/auth/login"):
        return "logged out"
    assert answer.status_code == 403, (answer.status_code, answer.text)
    return "refused: " + html.unescape(re.sub(r"<[^>]+>", " ", answer.text))


def assert_exactly_one_won(rounds, *, refusal: str) -> None:
    for answers, accounts in rounds:
        outcomes = [outcome(answer, account.id) for answer, account in zip(answers, reversed(accounts))]
        assert sorted(o == "done" for o in outcomes) == [False, True], outcomes
        lost = next(o for o in outcomes if o != "done")
        assert lost == "logged out" or refusal in lost or "permission" in lost, lost
        assert len(active_supers(accounts)) == 1, accounts


def test_two_supers_demoting_each_other_at_once_leave_one_super(app, client, make_user, run_db):
    rounds = supers_acting_on_each_other_at_once(
        app, client, make_user, run_db, lambda target: {"scopes": ["authenticated", ""], "active": "true"}
    )

    assert_exactly_one_won(rounds, refusal="no longer holds admin or super")


def test_two_supers_deactivating_each_other_at_once_leave_one_active(app, client, make_user, run_db):
    rounds = supers_acting_on_each_other_at_once(
        app, client, make_user, run_db,
        lambda target: {"scopes": ["authenticated", "super", ""], "active": "false"},
    )

    assert_exactly_one_won(rounds, refusal="no longer active")


# Deactivating asks first (issue 16, item 8)

DEACTIVATE_LINK = re.compile(r'<a [^>]*class="button danger"[^>]*href="(/admin/users/\d+/deactivate)"[^>]*>')


def test_the_user_page_offers_deactivate_as_a_dangerous_link_not_a_radio(admin, alice):
    page = admin.get(f"/admin/users/{alice.id}").text

    assert DEACTIVATE_LINK.search(page).group(1) == f"/admin/users/{alice.id}/deactivate"
    assert 'name="active" type="radio" value="false"' not in page
    assert '<input type="hidden" name="active" value="true">' in page


def test_the_deactivate_page_asks_first_and_changes_nothing(admin, alice, run_db):
    page = admin.get(f"/admin/users/{alice.id}/deactivate")

    assert page.status_code == 200
    assert f'<form method="post" action="/admin/users/{alice.id}"' in page.text
    assert '<input type="hidden" name="active" value="false">' in page.text
    assert '<input type="hidden" name="scopes" value="authenticated">' in page.text
    assert re.search(r'<button type="submit" class="button danger">Deactivate alice</button>', page.text)
    assert re.search(rf'<a [^>]*href="/admin/users/{alice.id}"[^>]*>Cancel</a>', page.text)
    assert reload(run_db, alice.id).is_active


def test_confirming_deactivates_and_keeps_the_permissions(admin, alice, run_db, make_user):
    bob = make_user("bob", scopes=("authenticated", "reports", "billing"))
    page = admin.get(f"/admin/users/{bob.id}/deactivate").text
    form_html = re.search(rf'<form method="post" action="/admin/users/{bob.id}".*?</form>', page, re.S).group(0)
    fields = re.findall(r'<input type="hidden" name="(\w+)" value="([^"]*)">', form_html)

    form = {}
    for name, value in fields:
        form.setdefault(name, []).append(html.unescape(value))

    response = admin.post(f"/admin/users/{bob.id}", data=form)

    assert response.status_code == 303
    assert response.headers["location"] == f"/admin/users/{bob.id}"
    bob = reload(run_db, bob.id)
    assert not bob.is_active
    assert bob.scopes == ["authenticated", "reports", "billing"]


def test_an_already_deactivated_user_is_not_asked_about_again(admin, make_user):
    bob = make_user("bob", active=False)

    response = admin.get(f"/admin/users/{bob.id}/deactivate")

    assert response.status_code == 303
    assert response.headers["location"] == f"/admin/users/{bob.id}"
    page = admin.get(f"/admin/users/{bob.id}").text
    assert 'name="active" type="radio" value="true"' in page  # reactivating needs no second step


def test_the_deactivate_page_is_for_admins_only_and_404s_for_an_unknown_id(admin, alice, logged_in_client):
    assert logged_in_client.get(f"/admin/users/{alice.id}/deactivate").status_code == 403
    assert admin.get(f"/admin/users/{NO_SUCH_ID}/deactivate").status_code == 404


@pytest.mark.parametrize(("action", "question"), [
    ("revoke-sessions", "End every session of bob?"),
    ("mfa-reset", "Remove bob's second factors?"),
])
def test_the_other_destructive_actions_ask_first_on_a_page_holding_the_real_form(superuser, make_user, action, question):
    bob = make_user("bob")

    page = superuser.get(f"/admin/users/{bob.id}/{action}")

    assert page.status_code == 200
    assert f"<h1>{question}</h1>" in html.unescape(page.text)
    form_html = re.search(rf'<form method="post" action="/admin/users/{bob.id}/{action}".*?</form>', page.text, re.S)
    assert form_html and 'class="button danger"' in form_html.group(0)
    assert f'href="/admin/users/{bob.id}">Cancel</a>' in page.text


def test_the_user_page_links_to_the_questions_instead_of_posting_at_once(superuser, make_user):
    bob = make_user("bob")

    page = superuser.get(f"/admin/users/{bob.id}").text

    assert f'action="/admin/users/{bob.id}/revoke-sessions"' not in page
    assert f'<a class="button danger" href="/admin/users/{bob.id}/revoke-sessions">' in page


def test_asking_about_an_unknown_user_is_404(superuser):
    assert superuser.get("/admin/users/99999/revoke-sessions").status_code == 404


@pytest.mark.parametrize("question", ["deactivate", "revoke-sessions"])
def test_a_plain_admin_is_refused_before_being_asked_about_a_super(admin, make_user, question):
    root = make_user("root", scopes=("authenticated", "super"))

    response = admin.get(f"/admin/users/{root.id}/{question}")

    assert response.status_code == 403
    assert "Only a super user" in response.text
