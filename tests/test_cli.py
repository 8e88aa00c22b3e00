"""`python run.py`: its commands, run as an operator would, on the test database,
and the AUTHSITE_ADMIN_* bootstrap at start."""

import subprocess

import pytest
from fastapi.testclient import TestClient

from authsite import Settings, accounts, create_app
from support import PASSWORD, log_in

NEW_PASSWORD = "a brand new passphrase"
ADMIN_SCOPES = {"authenticated", "admin", "super"}


def assert_failed_in_one_line(result: subprocess.CompletedProcess, *words: str) -> None:
    assert result.returncode == 1, result.stderr
    assert len(result.stderr.splitlines()) == 1, result.stderr
    assert "Traceback" not in result.stderr
    for word in words:
        assert word in result.stderr


def find_user(run_db, name: str):
    return run_db(lambda db: accounts.get_user_by_username(db, name))


def test_help_lists_every_command(run_cli):
    result = run_cli("--help")

    assert result.returncode == 0, result.stderr
    for command in ("serve", "create-user", "set-password"):
        assert command in result.stdout


def test_create_user_makes_an_account_that_can_log_in(run_cli, client):
    result = run_cli(
        "create-user", "bob", "--scope", "admin", "--email", "b@example.com", "--password-stdin",
        stdin=PASSWORD + "\n",
    )
    assert result.returncode == 0, result.stderr

    assert log_in(client, "bob").status_code == 303
    me = client.get("/api/me").json()
    assert me["username"] == "bob"
    assert me["email"] == "b@example.com"
    assert set(me["scopes"]) == {"authenticated", "admin"}


@pytest.mark.parametrize("name", ["bob", "BOB"])
def test_create_user_refuses_a_taken_name(run_cli, make_user, name):
    make_user("bob")

    result = run_cli("create-user", name, "--password-stdin", stdin=PASSWORD + "\n")

    assert_failed_in_one_line(result, "taken")


def test_create_user_refuses_a_too_short_password(run_cli, run_db):
    result = run_cli("create-user", "carol", "--password-stdin", stdin="short\n")

    assert_failed_in_one_line(result, "password", "8")
    assert find_user(run_db, "carol") is None


def test_set_password_changes_it_and_ends_the_users_sessions(run_cli, make_user, client):
    make_user("bob")
    assert log_in(client, "bob").status_code == 303

    result = run_cli("set-password", "bob", "--password-stdin", stdin=NEW_PASSWORD + "\n")

    assert result.returncode == 0, result.stderr
    assert client.get("/api/me").status_code == 401
    assert log_in(client, "bob", PASSWORD).status_code == 401
    assert log_in(client, "bob", NEW_PASSWORD).status_code == 303


def test_set_password_for_an_unknown_user_fails_clearly(run_cli):
    result = run_cli("set-password", "nobody", "--password-stdin", stdin=NEW_PASSWORD + "\n")

    assert_failed_in_one_line(result, "nobody")


@pytest.fixture
def bob_and_carol(make_user, client, app) -> tuple[TestClient, TestClient]:
    """Two users, each logged in in a browser of their own."""
    make_user("bob")
    make_user("carol")
    assert log_in(client, "bob").status_code == 303
    carol = TestClient(app, follow_redirects=False)
    carol.portal = client.portal
    assert log_in(carol, "carol").status_code == 303
    return client, carol


def test_end_sessions_logs_one_user_out_everywhere(run_cli, bob_and_carol):
    client, carol = bob_and_carol

    result = run_cli("end-sessions", "BOB")

    assert result.returncode == 0, result.stderr
    assert client.get("/api/me").status_code == 401
    assert carol.get("/api/me").status_code == 200


def test_end_sessions_all_logs_everyone_out(run_cli, bob_and_carol):
    client, carol = bob_and_carol

    result = run_cli("end-sessions", "--all")

    assert result.returncode == 0, result.stderr
    assert "2 session" in result.stdout
    assert client.get("/api/me").status_code == 401
    assert carol.get("/api/me").status_code == 401


def test_end_sessions_needs_a_name_or_all(run_cli):
    assert run_cli("end-sessions").returncode == 2
    assert_failed_in_one_line(run_cli("end-sessions", "nobody"), "nobody")


def test_admin_variables_create_a_super_user_at_start(monkeypatch, tmp_path, database_url):
    monkeypatch.setenv("AUTHSITE_ADMIN_USERNAME", "root")
    monkeypatch.setenv("AUTHSITE_ADMIN_PASSWORD", NEW_PASSWORD)
    settings = Settings(_env_file=None, data_dir=tmp_path / "data", database_url=database_url, allowed_hosts="testserver")

    with TestClient(create_app(settings), follow_redirects=False) as client:
        assert log_in(client, "root", NEW_PASSWORD).status_code == 303
        assert set(client.get("/api/me").json()["scopes"]) == ADMIN_SCOPES


def test_admin_variables_leave_an_existing_user_alone(make_user, make_settings):
    make_user("root", scopes=("authenticated",))
    settings = make_settings(admin_username="root", admin_password=NEW_PASSWORD)

    with TestClient(create_app(settings), follow_redirects=False) as client:
        assert log_in(client, "root", NEW_PASSWORD).status_code == 401
        assert log_in(client, "root", PASSWORD).status_code == 303
        assert client.get("/api/me").json()["scopes"] == ["authenticated"]
