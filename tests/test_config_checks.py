"""Settings as a host app meets them (issue 17): a misspelled AUTHSITE_* name raises there too, the
test suite's own names do not, bad values read in plain words without secrets, and
AUTHSITE_OPENAPI hides the API description."""

import re
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from pydantic import ValidationError

from authsite import Settings, create_app
from authsite.cli import describe_settings_error
from authsite.config import NOT_SETTINGS

README = Path(__file__).resolve().parents[1] / "README.md"


def error_line(**values) -> str:
    with pytest.raises(ValidationError) as caught:
        Settings(_env_file=None, **values)
    return describe_settings_error(caught.value)


def test_a_host_app_with_a_misspelled_variable_gets_an_error_naming_it(monkeypatch):
    monkeypatch.setenv("AUTHSITE_ALLOW_SINGUP", "false")

    with pytest.raises(ValidationError) as caught:
        Settings()

    assert describe_settings_error(caught.value) == (
        "AUTHSITE_ALLOW_SINGUP is not a setting; did you mean AUTHSITE_ALLOW_SIGNUP?"
    )


def test_names_are_matched_whatever_their_case(monkeypatch):
    monkeypatch.setenv("authsite_prot", "8005")

    with pytest.raises(ValidationError, match="AUTHSITE_PROT is not a setting; did you mean AUTHSITE_PORT"):
        Settings()


def test_a_misspelled_name_in_the_dotenv_file_is_named_with_the_file(tmp_path):
    (tmp_path / "site.env").write_text("AUTHSITE_PORT=9000\nAUTHSITE_SMTP_ULR=smtp://mail.example\nOTHER_APP=1\n")

    with pytest.raises(ValidationError) as caught:
        Settings(_env_file=tmp_path / "site.env")

    assert describe_settings_error(caught.value) == (
        "AUTHSITE_SMTP_ULR in .env is not a setting; did you mean AUTHSITE_SMTP_URL?"
    )


def test_without_a_dotenv_file_only_the_environment_is_checked(tmp_path, monkeypatch):
    (tmp_path / ".env").write_text("AUTHSITE_PROT=8005\n")

    assert Settings(_env_file=None).port == 8000


@pytest.mark.parametrize("name", sorted(NOT_SETTINGS))
def test_the_names_the_tests_and_ci_use_are_allowed_and_documented(monkeypatch, name):
    monkeypatch.setenv(name, "54329")

    assert Settings(_env_file=None).port == 8000
    assert f"`{name}`" in README.read_text()


def test_every_unknown_name_is_in_the_one_line(monkeypatch):
    monkeypatch.setenv("AUTHSITE_PROT", "1")
    monkeypatch.setenv("AUTHSITE_HSOT", "1")

    line = error_line()

    assert "AUTHSITE_PROT" in line and "AUTHSITE_HSOT" in line and "\n" not in line


@pytest.mark.parametrize(
    ("values", "line"),
    [
        ({"port": "abc"}, "invalid setting AUTHSITE_PORT: 'abc' is not a port number (1-65535)"),
        ({"port": 0}, "invalid setting AUTHSITE_PORT: '0' is not a port number (1-65535)"),
        ({"allow_signup": "perhaps"}, "invalid setting AUTHSITE_ALLOW_SIGNUP: 'perhaps' is not true or false"),
        ({"email_verification": "always"},
         "invalid setting AUTHSITE_EMAIL_VERIFICATION: 'always' is not one of none, optional, mandatory"),
        ({"login_max_failures": "-3"}, "invalid setting AUTHSITE_LOGIN_MAX_FAILURES: '-3' is not a whole number of 1 or more"),
        ({"allowed_hosts": "good.example,bad host"},
         "invalid setting AUTHSITE_ALLOWED_HOSTS: 'bad host' is not a host name (example.com, 127.0.0.1, ::1) or *"),
        ({"base_url": "example.com"},
         "invalid setting AUTHSITE_BASE_URL: 'example.com' must be an absolute http(s) URL such as https://example.com"),
    ],
)
def test_a_bad_value_reads_in_plain_words(values, line):
    assert error_line(**values) == line


def test_pydantics_own_wording_never_reaches_the_line():
    line = error_line(port="abc", allow_signup="perhaps", cookie_secure="x", sudo_seconds="0")

    for wording in ("Input should", "type=", "parse", "https://errors.pydantic.dev"):
        assert wording not in line


def test_a_url_is_shown_with_its_password_masked():
    line = error_line(database_url="mysql://site:s3cret@db.example/site")

    assert "'mysql://site:***@db.example/site'" in line
    assert "s3cret" not in line


def test_a_secret_value_is_never_shown():
    line = error_line(secret_key="short-s3cret")

    assert line == "invalid setting AUTHSITE_SECRET_KEY: must be at least 32 characters (or unset, to generate one)"


def test_the_api_description_is_served_by_default(make_settings):
    with TestClient(create_app(make_settings())) as client:
        assert client.get("/openapi.json").status_code == 200
        assert client.get("/docs").status_code == 404


def test_authsite_openapi_false_hides_the_api_description(make_settings, monkeypatch):
    monkeypatch.setenv("AUTHSITE_OPENAPI", "false")

    with TestClient(create_app(make_settings())) as client:
        assert client.get("/openapi.json").status_code == 404
        assert client.get("/docs").status_code == 404
        assert client.get("/api/me").status_code == 401  # the API itself still answers


def test_every_name_in_the_example_dotenv_file_is_a_setting():
    names = re.findall(r"^#\s*(AUTHSITE_\w+)=", (README.parent / ".env.example").read_text(), re.MULTILINE)
    settings = {f"AUTHSITE_{field.upper()}" for field in Settings.model_fields}

    assert len(names) > 20
    assert set(names) <= settings, set(names) - settings
