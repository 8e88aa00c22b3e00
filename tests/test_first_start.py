"""The first ten minutes (issue 17), as a newcomer meets them through `python run.py`: a misspelled
setting, a Postgres URL without its driver, a data folder that cannot be used, a bad value, a port
already taken each stop the start with one line and exit status 2; the first start says what it
made and where the site is."""

import os
import socket
import subprocess
import sys
import time
import tomllib
from pathlib import Path

import httpx2
import pytest

from support import free_port, stop_process

# Each test starts run.py on a fresh default data folder of its own, never on the test database:
# the Postgres pass of CI would only run them again.
pytestmark = pytest.mark.sqlite_only

REPO = Path(__file__).resolve().parents[1]
RUN_PY = REPO / "run.py"
START_TIMEOUT_SECONDS = 20


def run_py(cwd: Path, *args: str, stdin: str = "", **variables: str) -> subprocess.CompletedProcess:
    """`python run.py *args` with only `variables` among AUTHSITE_* (data in cwd/data, a free port)."""
    env = {name: value for name, value in os.environ.items() if not name.startswith("AUTHSITE_")}
    env |= {"AUTHSITE_DATA_DIR": str(cwd / "data"), "AUTHSITE_PORT": str(free_port()), **variables}
    return subprocess.run([sys.executable, str(RUN_PY), *args], cwd=cwd, env=env, input=stdin,
                          capture_output=True, text=True, timeout=60)


def assert_refused_in_one_line(result: subprocess.CompletedProcess, *words: str) -> str:
    assert result.returncode == 2, result.stderr
    assert len(result.stderr.splitlines()) == 1, result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    for word in words:
        assert word in result.stderr
    return result.stderr.strip()


# --- item 3: a misspelled AUTHSITE_* name stops the start


def test_a_misspelled_variable_stops_the_start_and_names_the_real_one(tmp_path):
    result = run_py(tmp_path, AUTHSITE_PROT="8005")

    line = assert_refused_in_one_line(result)
    assert line == "authsite: AUTHSITE_PROT is not a setting; did you mean AUTHSITE_PORT?"


def test_a_misspelled_name_in_the_dotenv_file_stops_the_start(tmp_path):
    (tmp_path / ".env").write_text("AUTHSITE_ALLOW_SINGUP=false\n")

    result = run_py(tmp_path)

    line = assert_refused_in_one_line(result)
    assert line == "authsite: AUTHSITE_ALLOW_SINGUP in .env is not a setting; did you mean AUTHSITE_ALLOW_SIGNUP?"


def test_a_name_like_no_setting_at_all_points_to_the_settings_table(tmp_path):
    result = run_py(tmp_path, AUTHSITE_ZEBRA_CROSSING="1")

    assert_refused_in_one_line(result, "AUTHSITE_ZEBRA_CROSSING is not a setting", "README.md", "Settings")


def test_every_command_refuses_a_misspelled_setting(tmp_path):
    result = run_py(tmp_path, "create-user", "bob", "--password-stdin", stdin="a long pass phrase\n",
                    AUTHSITE_SESION_IDLE_SECONDS="60")

    assert_refused_in_one_line(result, "did you mean AUTHSITE_SESSION_IDLE_SECONDS?")
    assert not (tmp_path / "data" / "authsite.db").exists()


def test_the_variables_of_the_test_suite_and_ci_are_not_refused(tmp_path):
    result = run_py(tmp_path, "db", "current", AUTHSITE_TEST_DATABASE_URL="postgresql://x@127.0.0.1:1/x",
                    AUTHSITE_PG_PORT="54329", AUTHSITE_PG_DIR=str(tmp_path / "pg"))

    assert result.returncode == 0, result.stderr


# --- item 2: a Postgres URL without asyncpg


def test_the_postgres_driver_is_installed_with_the_package():
    dependencies = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]

    assert any(dependency.startswith("asyncpg") for dependency in dependencies)


@pytest.fixture
def without_asyncpg(tmp_path) -> dict[str, str]:
    """PYTHONPATH for a Python that finds no asyncpg, as after `pip install --no-deps`."""
    hide = tmp_path / "no-asyncpg"
    hide.mkdir()
    (hide / "sitecustomize.py").write_text("import sys\nsys.modules['asyncpg'] = None\n")
    return {"PYTHONPATH": str(hide)}


@pytest.mark.parametrize("command", [[], ["serve"], ["create-user", "bob", "--password-stdin"], ["db", "current"],
                                     ["end-sessions", "--all"]])
def test_a_postgres_url_without_asyncpg_says_what_to_install(tmp_path, without_asyncpg, command):
    result = run_py(tmp_path, *command, stdin="a long pass phrase\n",
                    AUTHSITE_DATABASE_URL="postgresql://site:pw@127.0.0.1:1/site", **without_asyncpg)

    assert_refused_in_one_line(result, "AUTHSITE_DATABASE_URL", "asyncpg", "pip install")
    assert "pw@" not in result.stderr


# --- item 4: the data folder


def test_a_file_where_the_data_folder_should_be_is_named(tmp_path):
    (tmp_path / "data").write_text("not a folder")

    result = run_py(tmp_path)

    line = assert_refused_in_one_line(result, "AUTHSITE_DATA_DIR", str(tmp_path / "data"), "is a file")
    assert "database" not in line


def test_a_data_folder_under_a_file_cannot_be_created(tmp_path):
    (tmp_path / "plain").write_text("a file")
    data_dir = tmp_path / "plain" / "data"

    result = run_py(tmp_path, "create-user", "bob", "--password-stdin", stdin="a long pass phrase\n",
                    AUTHSITE_DATA_DIR=str(data_dir))

    assert_refused_in_one_line(result, "AUTHSITE_DATA_DIR", str(data_dir), "cannot be created",
                               f"{tmp_path / 'plain'} is a file")


def unwritable_folder(tmp_path: Path) -> Path:
    if os.geteuid() != 0:
        folder = tmp_path / "locked"
        folder.mkdir(mode=0o500)
        return folder
    # root writes anywhere permissions are concerned; sysfs refuses new files even to root.
    folder = Path("/sys/kernel")
    try:
        (folder / "authsite-probe").touch()
    except OSError:
        return folder
    pytest.fail("found no folder this user cannot write in")


def test_a_data_folder_this_user_cannot_write_in_is_named(tmp_path):
    folder = unwritable_folder(tmp_path)

    result = run_py(tmp_path, AUTHSITE_DATA_DIR=str(folder))

    assert_refused_in_one_line(result, "AUTHSITE_DATA_DIR", str(folder), "cannot write")


def test_a_data_folder_that_cannot_be_made_is_named(tmp_path):
    folder = unwritable_folder(tmp_path) / "authsite"

    result = run_py(tmp_path, AUTHSITE_DATA_DIR=str(folder))

    assert_refused_in_one_line(result, "AUTHSITE_DATA_DIR", str(folder), "cannot be created")


# --- item 9: bad values in plain words, a port in use


@pytest.mark.parametrize(
    ("variable", "value", "line"),
    [
        ("AUTHSITE_PORT", "abc", "AUTHSITE_PORT: 'abc' is not a port number (1-65535)"),
        ("AUTHSITE_PORT", "70000", "AUTHSITE_PORT: '70000' is not a port number (1-65535)"),
        ("AUTHSITE_ALLOW_SIGNUP", "maybe", "AUTHSITE_ALLOW_SIGNUP: 'maybe' is not true or false"),
        ("AUTHSITE_COOKIE_SECURE", "sometimes", "AUTHSITE_COOKIE_SECURE: 'sometimes' is not one of auto, true, false"),
        ("AUTHSITE_LOG_LEVEL", "loud", "AUTHSITE_LOG_LEVEL: 'loud' is not one of debug, info, warning, error, critical"),
        ("AUTHSITE_SUDO_SECONDS", "soon", "AUTHSITE_SUDO_SECONDS: 'soon' is not a whole number of 1 or more"),
        ("AUTHSITE_SESSION_IDLE_SECONDS", "0", "AUTHSITE_SESSION_IDLE_SECONDS: '0' is not a whole number of 1 or more"),
        ("AUTHSITE_SITE_NAME", "x" * 61, "AUTHSITE_SITE_NAME: '" + "x" * 61 + "' is longer than 60 characters"),
        ("AUTHSITE_DATABASE_URL", "mysql://db/site", "AUTHSITE_DATABASE_URL: 'mysql://db/site' must be a sqlite:// or postgresql:// URL"),
    ],
)
def test_a_bad_value_is_shown_with_what_is_accepted(tmp_path, variable, value, line):
    result = run_py(tmp_path, **{variable: value})

    assert assert_refused_in_one_line(result) == f"authsite: invalid setting {line}"


@pytest.mark.parametrize(
    ("variable", "value"),
    [("AUTHSITE_SECRET_KEY", "tooshort-s3cret"), ("AUTHSITE_DATABASE_URL", "mysql://site:s3cret@db/site"),
     ("AUTHSITE_SMTP_URL", "ftp://mailer:s3cret@mail.example")],
)
def test_a_bad_secret_is_never_shown(tmp_path, variable, value):
    result = run_py(tmp_path, **{variable: value})

    assert_refused_in_one_line(result, variable)
    assert "s3cret" not in result.stderr + result.stdout


def test_a_port_already_in_use_stops_the_start_in_one_line(tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]

        result = run_py(tmp_path, AUTHSITE_HOST="127.0.0.1", AUTHSITE_PORT=str(port))

    assert_refused_in_one_line(result, "AUTHSITE_PORT", f"127.0.0.1:{port}", "already in use")


# --- item 9 and 10: what a start says


def start_and_stop(tmp_path: Path, **variables: str) -> str:
    """Start `python run.py`, wait until it answers, stop it; what it printed on stdout."""
    port = free_port()
    env = {name: value for name, value in os.environ.items() if not name.startswith("AUTHSITE_")}
    env |= {"AUTHSITE_DATA_DIR": str(tmp_path / "data"), "AUTHSITE_PORT": str(port), **variables}
    out, err = tmp_path / "stdout.log", tmp_path / "stderr.log"
    with out.open("w") as stdout, err.open("w") as stderr:
        process = subprocess.Popen([sys.executable, str(RUN_PY)], cwd=tmp_path, env=env, stdout=stdout,
                                   stderr=stderr, start_new_session=True)
    try:
        deadline = time.monotonic() + START_TIMEOUT_SECONDS
        while not answers(f"http://127.0.0.1:{port}/healthz"):
            if process.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"run.py did not start ({process.poll()}):\n{err.read_text()}")
            time.sleep(0.05)
    finally:
        stop_process(process)
    return out.read_text().replace(str(port), "PORT")


def answers(url: str) -> bool:
    try:
        return httpx2.get(url, timeout=1).status_code == 200
    except httpx2.TransportError:
        return False


def test_the_first_start_says_what_it_created_and_where_the_site_is(tmp_path):
    said = start_and_stop(tmp_path, AUTHSITE_HOST="127.0.0.1")

    data = tmp_path / "data"
    assert f"created the database {data / 'authsite.db'}" in said
    assert f"created the secret key {data / 'secret_key'}" in said
    assert "open http://127.0.0.1:PORT" in said


def test_a_later_start_creates_nothing_and_still_says_where_the_site_is(tmp_path):
    start_and_stop(tmp_path, AUTHSITE_HOST="127.0.0.1")

    said = start_and_stop(tmp_path, AUTHSITE_HOST="127.0.0.1")

    assert "created" not in said
    assert "open http://127.0.0.1:PORT" in said


def test_listening_on_every_interface_without_a_base_url_warns(tmp_path):
    said = start_and_stop(tmp_path, AUTHSITE_HOST="0.0.0.0")

    assert "warning" in said and "AUTHSITE_BASE_URL" in said and "0.0.0.0" in said


def test_listening_on_every_interface_with_a_base_url_does_not_warn(tmp_path):
    said = start_and_stop(tmp_path, AUTHSITE_HOST="0.0.0.0", AUTHSITE_BASE_URL="https://site.example")

    assert "warning" not in said
    assert "open https://site.example" in said
