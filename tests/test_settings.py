"""Settings: defaults, AUTHSITE_* variables and .env, database URLs, the secret key,
and how `python run.py` refuses a bad value."""

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from pydantic import ValidationError

from authsite import Settings, create_app
from authsite.cli import describe_settings_error
from support import PASSWORD, form_token, free_port

RUN_PY = Path(__file__).resolve().parents[1] / "run.py"
STRONG_KEY = "k" * 32


def settings_from_environment() -> Settings:
    """What run.py would read: the environment and the .env of the working directory."""
    return Settings()


def settings_error(**values) -> str:
    with pytest.raises(ValidationError) as caught:
        Settings(_env_file=None, **values)
    return describe_settings_error(caught.value)


def run_py(cwd: Path, **variables: str) -> subprocess.CompletedProcess:
    env = {name: value for name, value in os.environ.items() if not name.startswith("AUTHSITE_")}
    # Should validation ever let the value through, the server must not take port 8000.
    env |= {"AUTHSITE_DATA_DIR": str(cwd / "data"), "AUTHSITE_PORT": str(free_port()), **variables}
    return subprocess.run(
        [sys.executable, str(RUN_PY)], cwd=cwd, env=env, capture_output=True, text=True, timeout=30
    )


def test_defaults_match_the_contract(tmp_path):
    settings = settings_from_environment()

    assert settings.data_dir == Path("data")
    assert settings.resolved_database_url == f"sqlite+aiosqlite:///{(tmp_path / 'data').resolve() / 'authsite.db'}"
    assert settings.secret_key is None
    assert (settings.host, settings.port) == ("127.0.0.1", 8000)
    assert settings.session_idle_seconds == 3600
    assert settings.session_max_seconds == 43200
    assert settings.remember_seconds == 2592000
    assert settings.cookie_secure == "auto"
    assert settings.allow_signup is True
    assert settings.smtp_url is None
    assert (settings.login_max_failures, settings.login_window_seconds) == (10, 180)
    assert settings.admin_username is None and settings.admin_password is None
    assert settings.site_name == "authsite"
    assert settings.sudo_seconds == 900
    assert settings.mfa_required == frozenset()


def test_authsite_environment_variables_are_read(monkeypatch, tmp_path):
    monkeypatch.setenv("AUTHSITE_DATA_DIR", str(tmp_path / "elsewhere"))
    monkeypatch.setenv("AUTHSITE_PORT", "9001")
    monkeypatch.setenv("AUTHSITE_SESSION_IDLE_SECONDS", "120")
    monkeypatch.setenv("AUTHSITE_COOKIE_SECURE", "true")
    monkeypatch.setenv("AUTHSITE_ALLOW_SIGNUP", "false")

    settings = settings_from_environment()

    assert settings.data_dir == tmp_path / "elsewhere"
    assert settings.port == 9001
    assert settings.session_idle_seconds == 120
    assert settings.cookie_secure == "true"
    assert settings.allow_signup is False


def test_a_dotenv_file_in_the_working_directory_is_read(tmp_path):
    (tmp_path / ".env").write_text("AUTHSITE_PORT=9002\nAUTHSITE_LOGIN_MAX_FAILURES=3\n")

    settings = settings_from_environment()

    assert settings.port == 9002
    assert settings.login_max_failures == 3


def test_the_environment_wins_over_the_dotenv_file(monkeypatch, tmp_path):
    (tmp_path / ".env").write_text("AUTHSITE_PORT=9002\n")
    monkeypatch.setenv("AUTHSITE_PORT", "9003")

    assert settings_from_environment().port == 9003


@pytest.mark.parametrize(
    ("given", "used"),
    [
        ("postgres://u:p@db.example/site", "postgresql+asyncpg://u:p@db.example/site"),
        ("postgresql://u:p@db.example/site", "postgresql+asyncpg://u:p@db.example/site"),
        ("postgresql+asyncpg://u:p@db.example/site", "postgresql+asyncpg://u:p@db.example/site"),
        ("sqlite:////srv/site.db", "sqlite+aiosqlite:////srv/site.db"),
        ("sqlite+aiosqlite:////srv/site.db", "sqlite+aiosqlite:////srv/site.db"),
    ],
)
def test_database_urls_are_mapped_to_the_async_drivers(given, used):
    assert Settings(_env_file=None, database_url=given).resolved_database_url == used


def test_an_unknown_database_scheme_is_an_invalid_setting():
    assert "AUTHSITE_DATABASE_URL" in settings_error(database_url="mysql://u:p@db.example/site")


def test_session_lifetimes_of_one_second_are_accepted():
    settings = Settings(_env_file=None, session_idle_seconds=1, session_max_seconds=1, remember_seconds=1)

    assert (settings.session_idle_seconds, settings.session_max_seconds, settings.remember_seconds) == (1, 1, 1)


@pytest.mark.parametrize("variable", ["session_idle_seconds", "session_max_seconds", "remember_seconds"])
def test_a_session_lifetime_of_zero_is_an_invalid_setting(variable):
    assert f"AUTHSITE_{variable.upper()}" in settings_error(**{variable: 0})


def test_a_very_short_idle_limit_starts_with_a_warning(make_settings, caplog):
    with caplog.at_level("WARNING", logger="authsite"), TestClient(create_app(make_settings(session_idle_seconds=5))):
        pass

    assert any("AUTHSITE_SESSION_IDLE_SECONDS" in record.getMessage() for record in caplog.records)


def test_a_too_short_secret_key_is_an_invalid_setting():
    assert "AUTHSITE_SECRET_KEY" in settings_error(secret_key="too-short")


def test_an_admin_username_without_a_password_is_an_invalid_setting():
    assert "AUTHSITE_ADMIN_PASSWORD" in settings_error(admin_username="root")


SECRET = "s3cret-Pa55word-nobody-may-see-000"


@pytest.mark.parametrize(
    "values",
    [
        {"secret_key": "short" + SECRET[:20]},
        {"smtp_url": f"smtp://mailer:{SECRET}@mail.example:abc"},
        {"smtp_url": f"ftp://mailer:{SECRET}@mail.example"},
        {"database_url": f"mysql://site:{SECRET}@db.example/site"},
        {"admin_username": "root", "secret_key": SECRET, "smtp_url": f"smtp://m:{SECRET}@mail.example"},
        {"admin_password": SECRET, "database_url": f"postgresql://site:{SECRET}@db/site", "port": "x"},
        {"session_idle_seconds": 100, "session_max_seconds": 50, "admin_username": "r", "admin_password": SECRET},
    ],
    ids=["short key", "smtp port", "smtp scheme", "database scheme", "admin pair", "bad port", "idle over max"],
)
def test_a_settings_error_used_as_a_library_never_shows_a_secret(values):
    with pytest.raises(ValidationError) as caught:
        Settings(_env_file=None, **values)

    for text in (str(caught.value), repr(caught.value), caught.value.json(), describe_settings_error(caught.value)):
        assert SECRET not in text and SECRET[:20] not in text


def test_settings_printed_or_logged_show_no_password():
    settings = Settings(
        _env_file=None, database_url=f"postgresql://site:{SECRET}@db.example/site", secret_key=SECRET,
        smtp_url=f"smtps://mailer:{SECRET}@mail.example:465", admin_username="root", admin_password=SECRET,
    )

    assert SECRET not in repr(settings)
    assert SECRET not in str(settings)


@pytest.mark.parametrize(
    "url", [f"postgresql://site:{SECRET}@db.example:notaport/site", f"postgresql://site:{SECRET}@[::1/site"],
    ids=["port", "bracket"],
)
def test_an_unreadable_database_url_stops_run_py_in_one_line_without_its_password(tmp_path, url):
    result = run_py(tmp_path, AUTHSITE_DATABASE_URL=url)

    assert result.returncode == 2, result.stderr
    assert len(result.stderr.splitlines()) == 1, result.stderr
    assert "AUTHSITE_DATABASE_URL" in result.stderr
    assert SECRET not in result.stderr + result.stdout


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("AUTHSITE_PORT", "abc"),
        ("AUTHSITE_COOKIE_SECURE", "maybe"),
        ("AUTHSITE_DATABASE_URL", "mysql://x"),
        ("AUTHSITE_SECRET_KEY", "too-short"),
        ("AUTHSITE_ADMIN_USERNAME", "root"),
        ("AUTHSITE_SUDO_SECONDS", "0"),
        ("AUTHSITE_MFA_REQUIRED_SCOPES", "admin,Not A Scope"),
        ("AUTHSITE_SITE_NAME", "   "),
    ],
)
def test_run_py_refuses_a_bad_variable_in_one_line(tmp_path, variable, value):
    result = run_py(tmp_path, **{variable: value})

    assert result.returncode == 2, result.stderr
    assert len(result.stderr.splitlines()) == 1, result.stderr
    assert variable in result.stderr
    assert "Traceback" not in result.stderr + result.stdout


def test_run_py_refuses_a_bad_value_from_the_dotenv_file(tmp_path):
    (tmp_path / ".env").write_text("AUTHSITE_SESSION_IDLE_SECONDS=soon\n")

    result = run_py(tmp_path)

    assert result.returncode == 2, result.stderr
    assert len(result.stderr.splitlines()) == 1, result.stderr
    assert "AUTHSITE_SESSION_IDLE_SECONDS" in result.stderr
    assert "Traceback" not in result.stderr + result.stdout


def test_without_a_secret_key_starting_creates_a_private_key_file(settings):
    key_file = settings.data_dir / "secret_key"
    assert not key_file.exists()

    with TestClient(create_app(settings)):
        pass

    assert len(key_file.read_text().strip()) >= 32
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600


def test_a_restart_keeps_the_generated_key(settings):
    key_file = settings.data_dir / "secret_key"
    with TestClient(create_app(settings)):
        first_key = key_file.read_text()

    with TestClient(create_app(settings)):
        assert key_file.read_text() == first_key


def test_a_csrf_token_issued_before_a_restart_validates_after_it(settings, user):
    with TestClient(create_app(settings), follow_redirects=False) as before:
        token = form_token(before)
        cookies = dict(before.cookies.items())

    with TestClient(create_app(settings), follow_redirects=False) as after:
        for name, value in cookies.items():
            after.cookies.set(name, value)
        response = after.post("/auth/login", data={"username": "alice", "password": PASSWORD, "csrf_token": token})

    assert response.status_code == 303, response.text


def test_a_configured_secret_key_is_used_instead_of_a_key_file(make_settings):
    settings = make_settings(secret_key=STRONG_KEY)

    with TestClient(create_app(settings)):
        pass

    assert not (settings.data_dir / "secret_key").exists()



def test_a_weak_admin_password_stops_the_start_with_status_2(tmp_path):
    result = run_py(tmp_path, AUTHSITE_ADMIN_USERNAME="root", AUTHSITE_ADMIN_PASSWORD="short")

    assert result.returncode == 2, result.stderr
    assert result.stderr.splitlines() == [
        "authsite: invalid setting AUTHSITE_ADMIN_PASSWORD: Use at least 8 characters."
    ]
