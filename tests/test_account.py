"""The account page: a user's details, where they are logged in, ending those sessions, the
profile form; and a deactivated account, whose sessions end at once."""

import re
from dataclasses import dataclass, field
from datetime import timedelta
from html.parser import HTMLParser
from urllib.parse import urlsplit

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import update
from sqlmodel import select

from authsite import accounts, devices, tokens
from authsite.models import Session, User, utcnow
from support import PASSWORD, FormPage, csrf_from, log_in

FIREFOX_ON_LINUX = "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0"
SAFARI_ON_IPHONE = (
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 "
    "(KHTML, like Gecko) Version/17.5 Mobile/15E148 Safari/604.1"
)
REVOKE_ACTION = re.compile(r"^/account/sessions/(\d+)/revoke$")
NO_SUCH_SESSION_ID = 987654


@dataclass
class SessionRow:
    id: int
    is_current: bool
    cells: list[str] = field(default_factory=list)

    @property
    def text(self) -> str:
        return " ".join(self.cells)


class AccountPage(HTMLParser):
    """What the account page shows: the details list, the sessions table, field errors."""

    def __init__(self, html: str):
        super().__init__()
        self.details: dict[str, str] = {}
        self.sessions: list[SessionRow] = []
        self.inputs: dict[str, dict[str, str]] = {}
        self.texts_by_id: dict[str, str] = {}
        self._row: SessionRow | None = None
        self._cell: list[str] | None = None
        self._term: str | None = None
        self._reading: str | None = None
        self._text_of: str | None = None
        self.feed(html)

    def handle_starttag(self, tag, attrs):
        attributes = {name: value or "" for name, value in attrs}
        if tag == "tr":
            self._row = SessionRow(id=0, is_current="current" in attributes.get("class", "").split())
        elif tag == "td" and self._row is not None:
            self._cell = []
        elif tag == "form" and self._row is not None and (match := REVOKE_ACTION.match(attributes["action"])):
            self._row.id = int(match.group(1))
        elif tag in ("dt", "dd"):
            self._reading = tag
            if tag == "dd":
                self.details[self._term] = ""
        elif tag == "input" and "name" in attributes:
            self.inputs[attributes.get("id", attributes["name"])] = attributes
        if "id" in attributes:
            self._text_of = attributes["id"]
            self.texts_by_id[self._text_of] = ""

    def handle_endtag(self, tag):
        if tag == "td" and self._row is not None and self._cell is not None:
            self._row.cells.append(" ".join("".join(self._cell).split()))
            self._cell = None
        elif tag == "tr" and self._row is not None:
            if self._row.id:
                self.sessions.append(self._row)
            self._row = None
        elif tag in ("dt", "dd"):
            self._reading = None
        if tag in ("p", "label", "h2"):
            self._text_of = None

    def handle_data(self, data):
        if self._cell is not None:
            self._cell.append(data)
        if self._reading == "dt":
            self._term = data.strip()
        elif self._reading == "dd":
            self.details[self._term] += data
        if self._text_of is not None:
            self.texts_by_id[self._text_of] += data

    def error_for(self, field_id: str) -> str | None:
        attributes = self.inputs[field_id]
        if attributes.get("aria-invalid") != "true":
            return None
        return self.texts_by_id.get(f"{field_id}-error", "").strip()

    @property
    def current(self) -> SessionRow:
        [row] = [row for row in self.sessions if row.is_current]
        return row


class SectionLinks(HTMLParser):
    """The account page's section navigation (its links' texts and targets) and the sections
    the page holds: each element's id with the text of the first heading inside it."""

    def __init__(self, html: str):
        super().__init__()
        self.links: dict[str, str] = {}
        self.headings: dict[str, str] = {}
        self._in_nav = False
        self._href: str | None = None
        self._open: list[str] = []  # ids of the sections entered and not yet named by a heading
        self._heading: str | None = None
        self.feed(html)

    def handle_starttag(self, tag, attrs):
        attributes = {name: value or "" for name, value in attrs}
        if tag == "nav" and attributes.get("aria-label") == "Account sections":
            self._in_nav = True
        elif tag == "a" and self._in_nav:
            self._href = attributes.get("href", "")
            self.links[self._href] = ""
        elif tag == "section" and "id" in attributes:
            self._open.append(attributes["id"])
        elif tag == "h2" and self._open:
            self._heading = self._open.pop()
            self.headings[self._heading] = ""

    def handle_endtag(self, tag):
        if tag == "nav":
            self._in_nav = False
        elif tag == "a":
            self._href = None
        elif tag == "h2":
            self._heading = None

    def handle_data(self, data):
        if self._href is not None:
            self.links[self._href] += data.strip()
        if self._heading is not None:
            self.headings[self._heading] += data


@pytest.fixture
def new_browser(app, client):
    """Another browser on the same running site: its own cookies, the same app and event loop."""

    def make(user_agent: str | None = None) -> TestClient:
        other = TestClient(app, base_url="http://testserver", follow_redirects=False)
        other.portal = client.portal
        if user_agent:
            other.headers["user-agent"] = user_agent
        return other

    return make


@pytest.fixture
def second_device(new_browser, logged_in_client) -> TestClient:
    """alice, logged in on a second browser too."""
    phone = new_browser(SAFARI_ON_IPHONE)
    assert log_in(phone).status_code == 303
    return phone


def when(moment) -> str:
    return f"{moment:%Y-%m-%d %H:%M} UTC"


def is_logged_in(client) -> bool:
    return client.get("/api/me").status_code == 200


def account_page(client) -> AccountPage:
    response = client.get("/account")
    assert response.status_code == 200, response.status_code
    return AccountPage(response.text)


def post_from_account(client, path: str, **fields):
    """Submit a form of the account page, as the browser showing it would."""
    token = csrf_from(client.get("/account").text)
    return client.post(path, data={"csrf_token": token, **fields})


def post_without_token(client, path: str):
    """The same form with its hidden csrf_token removed (a forged cross-site post)."""
    return client.post(path, content=b"", headers={"content-type": "application/x-www-form-urlencoded"})


def revoke(client, session_id: int):
    return post_from_account(client, f"/account/sessions/{session_id}/revoke")


def session_id_of(client, run_db) -> int:
    """The id of the session row behind this browser's cookie."""
    token_hash = tokens.hash_token(client.cookies["session"])

    async def find(db):
        return (await db.exec(select(Session.id).where(Session.token_hash == token_hash))).one()

    return run_db(find)


def session_count(run_db, user_id: int) -> int:
    async def count(db):
        return len((await db.exec(select(Session).where(Session.user_id == user_id))).all())

    return run_db(count)


def load_user(run_db, username="alice") -> User:
    async def load(db):
        return (await db.exec(select(User).where(User.username == username))).one()

    return run_db(load)


def form_html(html: str, action: str) -> str:
    """The markup of the form posting to `action` (one that must be there, once)."""
    [form] = re.findall(rf'<form method="post" action="{re.escape(action)}".*?</form>', html, re.DOTALL)
    return form


def assert_sent_to_account(response):
    assert response.status_code == 303, response.text[:300]
    assert urlsplit(response.headers["location"]).path == "/account"


# The page


def test_an_anonymous_visitor_is_sent_to_log_in(client):
    response = client.get("/account")

    assert response.status_code == 303
    assert response.headers["location"] == "/auth/login?next=%2Faccount"


def test_the_account_page_is_never_cached(logged_in_client):
    assert "no-store" in logged_in_client.get("/account").headers["cache-control"]


def test_the_account_page_shows_the_users_details(client, make_user, run_db):
    make_user("alice", email="alice@example.com", scopes=("authenticated", "admin"))
    log_in(client)
    stored = load_user(run_db)

    details = account_page(client).details

    assert details["Username"].strip() == "alice"
    assert details["Email"].split()[:2] == ["alice@example.com", "unconfirmed"]
    assert details["Permissions"].split() == ["authenticated", "admin"]
    assert details["Member since"].strip() == when(stored.created_at)
    assert details["Last login"].strip() == when(stored.last_login_at)


def test_a_section_navigation_leads_to_each_part_of_the_page(logged_in_client):
    page = SectionLinks(logged_in_client.get("/account").text)

    assert list(page.links.values()) == ["Profile", "Password", "Security", "Sessions", "Activity"]
    for href, name in page.links.items():
        assert href.startswith("#"), href
        assert name.lower() in page.headings[href[1:]].lower(), (href, page.headings)


def test_the_security_summary_leads_to_the_security_page(logged_in_client):
    page = SectionLinks(logged_in_client.get("/account").text)

    assert "Second factors" in page.headings["security"] or "Security" in page.headings["security"]
    assert "/account/security" in FormPage(logged_in_client.get("/account").text).links


def test_the_security_page_shares_the_section_navigation(logged_in_client):
    html = logged_in_client.get("/account/security").text
    page = SectionLinks(html)

    assert page.links == {"/account#profile": "Profile", "/account#password": "Password",
                          "/account/security": "Security", "/account#sessions": "Sessions",
                          "/account#activity": "Activity"}
    assert re.search(r'<a href="/account/security" aria-current="page">Security</a>', html)


def test_signing_up_counts_as_the_first_login(client, run_db):
    # Sign-up logs the new user in, so "Last login" must not say "never" while they are logged in.
    token = csrf_from(client.get("/auth/register").text)
    password = "another long phrase 9"
    client.post(
        "/auth/register",
        data={"username": "bob", "password": password, "password_confirm": password, "csrf_token": token},
    )
    stored = load_user(run_db, "bob")

    assert stored.last_login_at is not None
    assert account_page(client).details["Last login"].strip() == when(stored.last_login_at)


def test_the_page_lists_this_session_with_when_and_where(client, user, run_db):
    client.headers["user-agent"] = FIREFOX_ON_LINUX
    log_in(client)
    session_id = session_id_of(client, run_db)

    async def read(db):
        return await db.get(Session, session_id)

    row = run_db(read)
    [shown] = account_page(client).sessions

    assert shown.id == session_id
    assert when(row.created_at) in shown.cells
    assert when(row.last_seen_at) in shown.cells
    assert row.ip and row.ip in shown.cells


@pytest.mark.parametrize(
    ("user_agent", "device_words"),
    [(FIREFOX_ON_LINUX, ["Firefox", "Linux"]), (SAFARI_ON_IPHONE, ["Safari", "iOS"])],
    ids=["firefox on linux", "iphone"],
)
def test_each_session_shows_a_readable_device(client, user, user_agent, device_words):
    client.headers["user-agent"] = user_agent
    log_in(client)

    [shown] = account_page(client).sessions

    device = shown.cells[0]
    for word in device_words:
        assert word in device
    assert "Mozilla/5.0" not in device  # a name, not the raw header


def test_a_session_without_a_user_agent_shows_an_unknown_device(client, user):
    client.headers.pop("user-agent", None)
    log_in(client)

    [shown] = account_page(client).sessions

    assert shown.cells[0].startswith("Unknown device")


def test_a_user_agent_that_broke_the_parser_still_lets_the_owner_see_every_device(logged_in_client, new_browser):
    # ua-parser's device rules raise ValueError on this header; the page once answered 500 for it.
    intruder = new_browser("Android 5;  )")
    assert log_in(intruder).status_code == 303

    rows = account_page(logged_in_client).sessions

    assert len(rows) == 2
    [odd] = [row for row in rows if not row.is_current]
    assert odd.cells[0].startswith("Android")


def test_a_user_agent_the_parser_cannot_read_shows_an_unknown_device(monkeypatch):
    def choke(header):
        raise ValueError(f"Unable to find OS family in {header}")

    import ua_parser  # devices.py imports it at its first use

    monkeypatch.setattr(ua_parser, "parse_os", choke)
    devices.describe_device.cache_clear()

    assert devices.describe_device("Anything/1.0 (Strange; )") == devices.UNKNOWN


def test_both_devices_show_and_only_this_one_is_marked(logged_in_client, second_device, run_db):
    laptop_id = session_id_of(logged_in_client, run_db)
    phone_id = session_id_of(second_device, run_db)

    laptop_view = account_page(logged_in_client)
    phone_view = account_page(second_device)

    assert {row.id for row in laptop_view.sessions} == {laptop_id, phone_id}
    assert laptop_view.current.id == laptop_id
    assert phone_view.current.id == phone_id
    assert "this device" in laptop_view.current.text
    assert [row for row in laptop_view.sessions if "this device" in row.text] == [laptop_view.current]
    [phone_row] = [row for row in laptop_view.sessions if row.id == phone_id]
    assert "iOS" in phone_row.text


def test_another_users_sessions_are_not_listed(logged_in_client, new_browser, make_user, run_db):
    make_user("bob")
    bob = new_browser()
    log_in(bob, "bob")

    listed = {row.id for row in account_page(logged_in_client).sessions}

    assert session_id_of(bob, run_db) not in listed
    assert listed == {session_id_of(logged_in_client, run_db)}


# Ending sessions


def test_revoking_another_session_logs_that_device_out(logged_in_client, second_device, run_db):
    phone_id = session_id_of(second_device, run_db)

    response = revoke(logged_in_client, phone_id)

    assert_sent_to_account(response)
    assert not is_logged_in(second_device)
    assert is_logged_in(logged_in_client)
    assert phone_id not in {row.id for row in account_page(logged_in_client).sessions}


def test_revoking_another_users_session_is_not_found_and_leaves_it_alone(
    logged_in_client, new_browser, make_user, run_db
):
    make_user("bob")
    bob = new_browser()
    log_in(bob, "bob")

    response = revoke(logged_in_client, session_id_of(bob, run_db))

    assert response.status_code == 404
    assert is_logged_in(bob)


def test_revoking_a_session_that_does_not_exist_is_not_found(logged_in_client):
    response = revoke(logged_in_client, NO_SUCH_SESSION_ID)

    assert response.status_code == 404
    assert is_logged_in(logged_in_client)


@pytest.mark.parametrize("session_id", [0, -1, 2**31, 2**63], ids=["zero", "negative", "past int32", "past int64"])
def test_revoking_an_id_no_session_could_have_is_not_found(logged_in_client, session_id):
    # An id past the column's integer range is simply one that does not exist.
    response = revoke(logged_in_client, session_id)

    assert response.status_code == 404
    assert is_logged_in(logged_in_client)


def test_revoking_the_current_session_logs_this_browser_out(logged_in_client, run_db, user):
    session_id = session_id_of(logged_in_client, run_db)

    response = revoke(logged_in_client, session_id)

    assert_sent_to_account(response)
    assert not is_logged_in(logged_in_client)
    assert session_count(run_db, user.id) == 0
    # Following the redirect, the browser is now asked to log in.
    assert logged_in_client.get("/account").headers["location"].startswith("/auth/login")


def test_sign_out_everywhere_else_keeps_only_this_session(logged_in_client, second_device, new_browser, run_db, user):
    third = new_browser(FIREFOX_ON_LINUX)
    log_in(third)
    assert session_count(run_db, user.id) == 3

    response = post_from_account(logged_in_client, "/account/sessions/revoke-others")

    assert_sent_to_account(response)
    assert is_logged_in(logged_in_client)
    assert not is_logged_in(second_device)
    assert not is_logged_in(third)
    assert [row.id for row in account_page(logged_in_client).sessions] == [session_id_of(logged_in_client, run_db)]


def test_the_account_page_asks_before_ending_every_other_session(logged_in_client, second_device):
    page = FormPage(logged_in_client.get("/account").text)

    # A link to a page that asks, not a button that ends them at once.
    assert "/account/sessions/revoke-others" in page.links
    assert is_logged_in(second_device)


def test_the_question_page_holds_the_real_form_and_a_way_back(logged_in_client, second_device):
    response = logged_in_client.get("/account/sessions/revoke-others")

    assert response.status_code == 200
    assert "End every other session?" in response.text
    form = FormPage(form_html(response.text, "/account/sessions/revoke-others"))
    [button] = form.buttons
    assert "danger" in button.get("class", "").split()
    assert "csrf_token" in form.inputs
    assert "/account#sessions" in FormPage(response.text).links  # Cancel
    assert "1 other" in " ".join(response.text.split())
    assert is_logged_in(second_device)


def test_answering_yes_on_the_question_page_ends_the_others(logged_in_client, second_device):
    token = csrf_from(logged_in_client.get("/account/sessions/revoke-others").text)

    response = logged_in_client.post("/account/sessions/revoke-others", data={"csrf_token": token})

    assert_sent_to_account(response)
    assert not is_logged_in(second_device)
    assert is_logged_in(logged_in_client)


def test_past_the_sudo_window_the_question_comes_after_confirming_who_they_are(logged_in_client, run_db):
    async def age(db):
        await db.exec(update(Session).values(authenticated_at=utcnow() - timedelta(hours=1)))
        await db.commit()

    run_db(age)

    response = logged_in_client.get("/account/sessions/revoke-others")

    assert (response.status_code, response.headers["location"]) == (
        303, "/auth/confirm?next=/account/sessions/revoke-others")


def test_the_question_page_needs_a_login(client):
    response = client.get("/account/sessions/revoke-others")

    assert response.status_code == 303
    assert response.headers["location"].startswith("/auth/login")


def test_sign_out_everywhere_else_leaves_other_users_alone(logged_in_client, new_browser, make_user):
    make_user("bob")
    bob = new_browser()
    log_in(bob, "bob")

    post_from_account(logged_in_client, "/account/sessions/revoke-others")

    assert is_logged_in(bob)


# Profile


def test_the_profile_form_saves_first_and_last_name(logged_in_client, run_db):
    response = post_from_account(logged_in_client, "/account/profile", first_name=" Ada ", last_name="Lovelace")

    assert_sent_to_account(response)
    stored = load_user(run_db)
    assert (stored.first_name, stored.last_name) == ("Ada", "Lovelace")
    assert account_page(logged_in_client).details["Name"].strip() == "Ada Lovelace"


def test_names_can_be_cleared_again(logged_in_client, run_db):
    post_from_account(logged_in_client, "/account/profile", first_name="Ada", last_name="Lovelace")

    post_from_account(logged_in_client, "/account/profile", first_name="", last_name="")

    stored = load_user(run_db)
    assert (stored.first_name, stored.last_name) == (None, None)


@pytest.mark.parametrize("name_field", ["first_name", "last_name"])
def test_a_name_over_50_characters_is_refused_with_a_message(logged_in_client, run_db, name_field):
    response = post_from_account(logged_in_client, "/account/profile", **{name_field: "x" * 51})

    assert response.status_code == 400
    assert "50" in AccountPage(response.text).error_for(name_field)
    stored = load_user(run_db)
    assert (stored.first_name, stored.last_name) == (None, None)


@pytest.mark.parametrize("name", ["Ada\x00", "Ada\x1b[31m", "Ada\nLovelace"], ids=["nul", "escape", "newline"])
def test_a_name_with_control_characters_is_refused(logged_in_client, run_db, name):
    response = post_from_account(logged_in_client, "/account/profile", first_name=name)

    assert response.status_code == 400
    assert AccountPage(response.text).error_for("first_name")
    assert load_user(run_db).first_name is None


def test_a_name_of_exactly_50_characters_is_kept(logged_in_client, run_db):
    post_from_account(logged_in_client, "/account/profile", first_name="é" * 50)

    assert load_user(run_db).first_name == "é" * 50


@pytest.mark.parametrize("current_password", [None, "", "not my password 1"], ids=["missing", "empty", "wrong"])
def test_changing_the_email_needs_the_current_password(client, make_user, run_db, current_password):
    make_user("alice", email="alice@example.com")
    log_in(client)
    fields = {"email": "new@example.com", "first_name": "Ada"}
    if current_password is not None:
        fields["current_password"] = current_password

    response = post_from_account(client, "/account/profile", **fields)

    assert response.status_code == 400
    assert AccountPage(response.text).error_for("profile-current-password")
    stored = load_user(run_db)
    assert (stored.email, stored.first_name) == ("alice@example.com", None)


@pytest.mark.parametrize("current_password", [None, ""], ids=["missing", "empty"])
def test_an_email_change_without_the_current_password_says_to_enter_it(client, make_user, current_password):
    make_user("alice", email="alice@example.com")
    log_in(client)
    fields = {"email": "new@example.com"}
    if current_password is not None:
        fields["current_password"] = current_password

    response = post_from_account(client, "/account/profile", **fields)

    message = AccountPage(response.text).error_for("profile-current-password")
    assert message == "Enter your current password to change your email."


def test_a_wrong_current_password_for_an_email_change_is_called_wrong(client, make_user):
    make_user("alice", email="alice@example.com")
    log_in(client)

    response = post_from_account(client, "/account/profile", email="new@example.com", current_password="not mine 123")

    assert AccountPage(response.text).error_for("profile-current-password") == "That is not your current password."


def test_a_new_email_with_the_right_current_password_waits_for_its_link(client, make_user, run_db):
    # The change itself, when the link is opened: tests/test_email_ownership.py.
    make_user("alice", email="alice@example.com")
    log_in(client)

    response = post_from_account(client, "/account/profile", email="Ada@EXAMPLE.org", current_password=PASSWORD)

    assert_sent_to_account(response)
    assert load_user(run_db).email == "alice@example.com"
    assert "Changing to Ada@example.org" in account_page(client).details["Email"]


def test_names_change_without_the_password_when_the_email_stays(client, make_user, run_db):
    make_user("alice", email="alice@example.com")
    log_in(client)

    response = post_from_account(client, "/account/profile", email="alice@example.com", first_name="Ada")

    assert_sent_to_account(response)
    assert load_user(run_db).first_name == "Ada"


def test_an_email_belonging_to_another_account_is_refused(logged_in_client, make_user, run_db):
    make_user("bob", email="bob@example.com")

    response = post_from_account(
        logged_in_client, "/account/profile", email="BOB@example.com", current_password=PASSWORD
    )

    assert response.status_code == 400
    assert AccountPage(response.text).error_for("email") == accounts.EMAIL_TAKEN
    assert load_user(run_db).email is None


def test_an_invalid_email_is_refused_on_the_profile_form(logged_in_client, run_db):
    response = post_from_account(
        logged_in_client, "/account/profile", email="not-an-address", current_password=PASSWORD
    )

    assert response.status_code == 400
    assert AccountPage(response.text).error_for("email")
    assert load_user(run_db).email is None


def test_a_refused_profile_form_never_shows_the_password_back(logged_in_client):
    response = post_from_account(
        logged_in_client, "/account/profile", first_name="x" * 51, email="new@example.com", current_password=PASSWORD
    )

    assert response.status_code == 400
    assert PASSWORD not in response.text


# Password


def password_form_inputs(html: str) -> dict[str, dict[str, str]]:
    return FormPage(form_html(html, "/account/password")).inputs


def test_the_password_form_tells_a_password_manager_whose_password_it_is(logged_in_client):
    username = password_form_inputs(logged_in_client.get("/account").text)["username"]

    assert (username["autocomplete"], username["value"]) == ("username", "alice")
    assert "readonly" in username


def test_the_username_sent_with_a_new_password_is_ignored(logged_in_client, make_user, client):
    make_user("bob")
    new = "a new long password 77"

    response = post_from_account(logged_in_client, "/account/password", username="bob", current_password=PASSWORD,
                                 new_password=new, new_password_confirm=new)

    assert_sent_to_account(response)
    logged_in_client.cookies.clear()
    assert log_in(logged_in_client, "alice", new).status_code == 303
    logged_in_client.cookies.clear()
    assert log_in(logged_in_client, "bob", PASSWORD).status_code == 303


# Forged requests


@pytest.mark.parametrize("token", [None, "", "forged.token"], ids=["missing", "empty", "forged"])
def test_a_profile_change_without_a_valid_csrf_token_is_refused(logged_in_client, run_db, token):
    data = {"first_name": "Mallory", "email": "mallory@example.com", "current_password": PASSWORD}
    if token is not None:
        data["csrf_token"] = token

    response = logged_in_client.post("/account/profile", data=data)

    assert response.status_code == 403
    stored = load_user(run_db)
    assert (stored.first_name, stored.email) == (None, None)


def test_revoking_a_session_without_the_csrf_token_is_refused(logged_in_client, second_device, run_db):
    response = post_without_token(logged_in_client, f"/account/sessions/{session_id_of(second_device, run_db)}/revoke")

    assert response.status_code == 403
    assert is_logged_in(second_device)


def test_revoking_this_session_without_the_csrf_token_is_refused(logged_in_client, run_db):
    response = post_without_token(
        logged_in_client, f"/account/sessions/{session_id_of(logged_in_client, run_db)}/revoke"
    )

    assert response.status_code == 403
    assert is_logged_in(logged_in_client)


def test_sign_out_everywhere_else_without_the_csrf_token_is_refused(logged_in_client, second_device):
    response = post_without_token(logged_in_client, "/account/sessions/revoke-others")

    assert response.status_code == 403
    assert is_logged_in(second_device)


def test_a_token_from_another_users_page_does_not_work_here(logged_in_client, new_browser, make_user, second_device):
    make_user("bob")
    bob = new_browser()
    log_in(bob, "bob")
    bobs_token = csrf_from(bob.get("/account").text)

    response = logged_in_client.post("/account/sessions/revoke-others", data={"csrf_token": bobs_token})

    assert response.status_code == 403
    assert is_logged_in(second_device)


# Deactivation


def deactivate(run_db, username="alice") -> None:
    async def switch_off(db):
        user = (await db.exec(select(User).where(User.username == username))).one()
        await accounts.set_user_active(db=db, user=user, active=False)

    run_db(switch_off)


def test_deactivating_a_user_ends_all_their_sessions_at_once(logged_in_client, second_device, run_db, user):
    deactivate(run_db)

    assert session_count(run_db, user.id) == 0
    assert not is_logged_in(logged_in_client)
    assert not is_logged_in(second_device)


def test_a_deactivated_user_cannot_log_in_and_is_told_nothing_more(client, user, run_db):
    deactivate(run_db)

    refused = log_in(client)
    wrong_password = log_in(client, password="not the password 1")

    assert refused.status_code == 401
    assert "session" not in client.cookies
    assert refused.text.count("Wrong username or password.") == 1
    assert re.sub(r'value="[^"]*"', "", refused.text) == re.sub(r'value="[^"]*"', "", wrong_password.text)


def test_deactivating_one_user_leaves_others_logged_in(logged_in_client, new_browser, make_user, run_db):
    make_user("bob")
    bob = new_browser()
    log_in(bob, "bob")

    deactivate(run_db, "bob")

    assert is_logged_in(logged_in_client)
    assert not is_logged_in(bob)


def test_a_reactivated_user_can_log_in_again(client, user, run_db):
    deactivate(run_db)

    async def switch_on(db):
        await accounts.set_user_active(db=db, user=await db.get(User, user.id), active=True)

    run_db(switch_on)

    assert log_in(client).status_code == 303
