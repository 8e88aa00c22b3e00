"""Names that look alike are one name: a sign-up whose name reads like an existing one once
confusable letters are folded (Unicode TR39's skeleton) is refused, and so is a name whose
letters mix scripts beyond what TR39's "highly restrictive" level allows. Bidi controls, which
turn what a page shows around, are refused in every field a user types and others read."""

from datetime import datetime, timezone

import pytest
from alembic import command
from alembic.config import Config
from sqlalchemy import MetaData, Table, select

from authsite import rules, schema
from authsite.accounts import USERNAME_CONFUSABLE
from support import PASSWORD, FormPage
from test_account import post_from_account
from test_migrations import on_connection, password_hash
from test_register import assert_refused, sign_up, sign_up_at_once, usernames

BIDI_CONTROLS = ["\u061c", "\u200e", "\u200f", "\u202a", "\u202b", "\u202c", "\u202d", "\u202e",
                 "\u2066", "\u2067", "\u2068", "\u2069"]


@pytest.mark.parametrize(
    ("existing", "lookalike"),
    [("alice", "\u0430lice"), ("root1", "r\u043e\u043et1"), ("paypal", "paypaI"),
     ("root1", "rootl"), ("ivan", "\u0456van")],
    ids=["cyrillic a", "cyrillic o", "capital I for l", "l for 1", "cyrillic i"],
)
def test_a_name_that_looks_like_a_taken_one_is_refused(client, run_db, make_user, existing, lookalike):
    make_user(existing)

    response = sign_up(client, lookalike)

    assert response.status_code == 400, response.text
    assert FormPage(response.text).error_for("username") in (USERNAME_CONFUSABLE, rules.MIXED_SCRIPTS)
    assert usernames(run_db) == [existing]


def test_a_lookalike_in_one_script_gets_the_lookalike_message(client, run_db, make_user):
    make_user("paypal")

    message = assert_refused(sign_up(client, "paypaI"), run_db, "username", users_before=["paypal"])

    assert message == USERNAME_CONFUSABLE


@pytest.mark.parametrize("username", ["\u0430lice", "r\u043e\u043et1", "\u0391lpha", "bob\u0410"],
                         ids=["cyrillic a", "cyrillic o", "greek alpha", "cyrillic capital a"])
def test_a_name_mixing_scripts_is_refused_even_when_nothing_looks_like_it(client, run_db, username):
    message = assert_refused(sign_up(client, username), run_db, "username")

    assert message == rules.MIXED_SCRIPTS


@pytest.mark.parametrize(
    "username",
    ["Zoë", "Владимир", "Σωκράτης", "漢字かなabc", "カタカナ_1", "한국어abc漢", "注音ㄅabc", "b.o_b-1"],
    ids=["latin", "cyrillic", "greek", "japanese and latin", "katakana", "korean and latin",
         "bopomofo and latin", "digits and punctuation"],
)
def test_names_in_one_script_or_an_allowed_mix_are_accepted(client, run_db, username):
    assert sign_up(client, username).status_code == 303
    assert usernames(run_db) == [username]


@pytest.mark.parametrize("control", BIDI_CONTROLS, ids=[f"U+{ord(c):04X}" for c in BIDI_CONTROLS])
def test_a_username_with_a_bidi_control_is_refused(client, run_db, control):
    assert_refused(sign_up(client, f"ali{control}ce"), run_db, "username")


@pytest.mark.parametrize("field", ["first_name", "last_name"])
@pytest.mark.parametrize("control", ["\u202e", "\u2066", "\u200f", "\u061c"])
def test_a_name_with_a_bidi_control_is_refused_on_the_profile(logged_in_client, run_db, field, control):
    response = post_from_account(logged_in_client, "/account/profile", **{field: f"Ali{control}ce"})

    assert response.status_code == 400, response.text
    assert "direction" in response.text


def test_a_bidi_control_in_an_email_is_refused(client, run_db):
    response = sign_up(client, "bob", email="bob\u202e@example.com")

    assert_refused(response, run_db, "email")


def test_two_lookalike_sign_ups_at_once_create_exactly_one_user(app, client, run_db):
    names = ["paypal", "paypaI"] * 5

    responses = client.portal.call(sign_up_at_once, app, names)

    statuses = sorted(response.status_code for response in responses)
    assert statuses == [303] + [400] * (len(names) - 1), statuses
    assert len(usernames(run_db)) == 1


def test_every_new_account_stores_its_skeleton(make_user, run_db):
    user = make_user("paypal")

    assert user.username_skeleton == rules.username_skeleton("paypal") == rules.username_skeleton("paypaI")


# Accounts from before the skeleton: migration 0005 fills it in


def _users_at_0004(connection, names: list[str]) -> None:
    config = Config()
    config.set_main_option("script_location", str(schema.MIGRATIONS_DIR))
    config.attributes["connection"] = connection
    command.upgrade(config, "0004")
    table = Table("user", MetaData(), autoload_with=connection)
    connection.execute(table.insert(), [
        {"username": name, "username_key": rules.username_key(name), "password_hash": password_hash(PASSWORD),
         "scopes": ["authenticated"], "is_active": True, "info": {}, "created_at": datetime.now(timezone.utc)}
        for name in names
    ])


def _skeletons(connection) -> dict[str, str | None]:
    table = Table("user", MetaData(), autoload_with=connection)
    return dict(connection.execute(select(table.c.username, table.c.username_skeleton).order_by(table.c.id)).all())


def test_the_upgrade_gives_existing_users_their_skeleton_and_a_taken_one_stays_empty(database_url, make_settings):
    from fastapi.testclient import TestClient

    from authsite import create_app

    on_connection(database_url, lambda conn: _users_at_0004(conn, ["alice", "\u0430lice", "bob"]))

    with TestClient(create_app(make_settings())):
        pass

    skeletons = on_connection(database_url, _skeletons)
    assert skeletons == {"alice": rules.username_skeleton("alice"), "\u0430lice": None,
                         "bob": rules.username_skeleton("bob")}


# Text an attacker types that others read: the audit log (headers arrive as latin-1, so a
# User-Agent cannot carry a bidi control at all)


def test_a_bidi_control_in_a_typed_login_name_is_written_out_in_the_audit_log(client, run_db):
    from authsite.events import Kind
    from authsite.models import AuthEvent

    client.post("/api/auth/login", json={"username": "evil\u202etxt.exe", "password": "whatever it is"})

    async def typed(db):
        return (await db.exec(select(AuthEvent.username).where(AuthEvent.kind == Kind.LOGIN_FAILED))).scalar_one()

    assert run_db(typed) == "evil\\u202etxt.exe"

