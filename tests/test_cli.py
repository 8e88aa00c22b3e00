"""`python run.py`: its commands, run as an operator would, on the test database,
and the AUTHSITE_ADMIN_* bootstrap at start."""

import os
import select
import subprocess
import sys
import time
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from authsite import Settings, accounts, create_app, events
from support import PASSWORD, log_in

RUN_PY = Path(__file__).resolve().parents[1] / "run.py"

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
    for command in ("serve", "create-user", "set-password", "set-scopes", "mfa-reset"):
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


# set-scopes: an operator's way back when no super user is left (item 12 of issue 12)

def scopes_of(run_db, name: str) -> list[str]:
    return find_user(run_db, name).scopes


def test_set_scopes_sets_exactly_the_given_scopes(run_cli, make_user, run_db):
    make_user("bob", scopes=("authenticated", "reports", "billing"))

    result = run_cli("set-scopes", "bob", "--scope", "admin", "--scope", "reports")

    assert result.returncode == 0, result.stderr
    assert scopes_of(run_db, "bob") == ["authenticated", "admin", "reports"]
    assert "bob" in result.stdout and "admin, reports" in result.stdout


def test_set_scopes_makes_a_super_user_when_none_is_left(run_cli, make_user, client):
    make_user("root", scopes=("authenticated", "admin"))

    result = run_cli("set-scopes", "root", "--scope", "super")

    assert result.returncode == 0, result.stderr
    assert log_in(client, "root").status_code == 303
    assert client.get("/admin/users").status_code == 200


def test_set_scopes_without_a_scope_leaves_only_authenticated(run_cli, make_user, run_db):
    make_user("bob", scopes=("authenticated", "reports"))

    assert run_cli("set-scopes", "bob").returncode == 0

    assert scopes_of(run_db, "bob") == ["authenticated"]


def test_set_scopes_refuses_to_remove_the_last_active_super(run_cli, make_user, run_db):
    make_user("root", scopes=("authenticated", "super"))
    make_user("deputy", scopes=("authenticated", "super"), active=False)

    result = run_cli("set-scopes", "root", "--scope", "admin")

    assert_failed_in_one_line(result, "last", "super")
    assert scopes_of(run_db, "root") == ["authenticated", "super"]


def test_set_scopes_removes_super_while_another_super_is_active(run_cli, make_user, run_db):
    make_user("root", scopes=("authenticated", "super"))
    make_user("deputy", scopes=("authenticated", "super"))

    assert run_cli("set-scopes", "root", "--scope", "admin").returncode == 0

    assert scopes_of(run_db, "root") == ["authenticated", "admin"]


def test_set_scopes_is_audited_as_done_from_the_shell(run_cli, make_user, run_db):
    bob = make_user("bob")

    assert run_cli("set-scopes", "bob", "--scope", "reports").returncode == 0

    [event] = run_db(lambda db: events.list_events(db=db, kind=events.Kind.SCOPES_CHANGED))
    assert event.user_id == bob.id
    assert event.actor_id is None
    assert event.detail == {"via": "cli", "before": ["authenticated"], "after": ["authenticated", "reports"]}


def test_set_scopes_refuses_an_unknown_user_or_a_bad_scope_name(run_cli, make_user, run_db):
    make_user("bob")

    assert_failed_in_one_line(run_cli("set-scopes", "nobody", "--scope", "admin"), "nobody")
    assert_failed_in_one_line(run_cli("set-scopes", "bob", "--scope", "Two Words"), "Two Words", "permission")
    assert scopes_of(run_db, "bob") == ["authenticated"]


# create-user and set-password without a terminal, and in what order they ask (item 7 of issue 17)


def assert_refused_in_one_line(result: subprocess.CompletedProcess, *words: str) -> None:
    assert result.returncode == 2, result.stderr
    assert len(result.stderr.splitlines()) == 1, result.stderr
    assert "Traceback" not in result.stderr and "EOFError" not in result.stderr
    for word in words:
        assert word in result.stderr


@pytest.mark.parametrize("command", ["create-user", "set-password"])
def test_without_a_terminal_the_password_is_asked_for_on_stdin_in_one_line(run_cli, make_user, run_db, command):
    if command == "set-password":
        make_user("bob")

    result = run_cli(command, "bob", stdin="")

    assert_refused_in_one_line(result, "--password-stdin", f"{command} bob --password-stdin")
    if command == "create-user":
        assert find_user(run_db, "bob") is None


def test_create_user_refuses_a_taken_name_before_asking_for_a_password(run_cli, make_user):
    make_user("bob")

    result = run_cli("create-user", "bob", stdin="")

    assert_failed_in_one_line(result, "taken")


def test_create_user_refuses_a_malformed_name_before_asking_for_a_password(run_cli):
    assert_failed_in_one_line(run_cli("create-user", "no spaces please", stdin=""), "username")


def test_set_password_for_an_unknown_user_fails_before_asking_for_a_password(run_cli):
    assert_failed_in_one_line(run_cli("set-password", "nobody", stdin=""), "nobody")


def test_create_user_at_a_terminal_shows_the_rules_before_asking(tmp_path, database_url, client):
    said = type_at_a_terminal(tmp_path, database_url, ["create-user", "dora"], [PASSWORD, PASSWORD])

    assert said.index("8 to 1024 characters") < said.index("Password:")
    assert "created user 'dora'" in said
    assert log_in(client, "dora").status_code == 303


def type_at_a_terminal(tmp_path, database_url, args: list[str], lines: list[str]) -> str:
    """Run `python run.py *args` on a pseudo-terminal, typing each line after the next prompt."""
    main, terminal = os.openpty()
    env = {name: value for name, value in os.environ.items() if not name.startswith("AUTHSITE_")}
    env |= {"AUTHSITE_DATA_DIR": str(tmp_path / "data"), "AUTHSITE_DATABASE_URL": database_url}
    process = subprocess.Popen([sys.executable, str(RUN_PY), *args], cwd=tmp_path, env=env,
                               stdin=terminal, stdout=terminal, stderr=terminal, start_new_session=True)
    os.close(terminal)
    said, typed = "", 0
    deadline = time.monotonic() + 60
    try:
        while time.monotonic() < deadline:
            if typed < len(lines) and said.count("Password") > typed:
                os.write(main, lines[typed].encode() + b"\n")
                typed += 1
            ready, _, _ = select.select([main], [], [], 0.1)
            if ready:
                try:
                    chunk = os.read(main, 4096)
                except OSError:  # the terminal closes when the process ends
                    break
                if not chunk:
                    break
                said += chunk.decode(errors="replace")
            elif process.poll() is not None:
                break
        assert process.wait(timeout=30) == 0, said
    finally:
        os.close(main)
        if process.poll() is None:
            process.kill()
    return said
