"""The container recipe. No container engine runs here, so the Dockerfile is read
and checked against the settings it sets, and then replayed: its COPY and pip
install in a clean virtual environment, and its CMD and HEALTHCHECK run there."""

import asyncio
import fnmatch
import json
import os
import shlex
import shutil
import signal
import stat
import subprocess
import sys
import time
import tomllib
from dataclasses import dataclass
from pathlib import Path

import httpx2
import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from sqlalchemy import inspect
from sqlalchemy.ext.asyncio import create_async_engine

from authsite import Settings
from support import free_port

REPO = Path(__file__).resolve().parents[1]
DOCKERFILE = REPO / "Dockerfile"
DOCKERIGNORE = REPO / ".dockerignore"
LOCK_FILE = REPO / "requirements.lock"
INSTALL_TIMEOUT_SECONDS = 600  # the first run downloads; pip's cache makes later ones quick
START_TIMEOUT_SECONDS = 30
STOP_TIMEOUT_SECONDS = 10
DEV_TOOLS = ("pytest", "httpx2", "aiosmtpd")


# --- reading the Dockerfile


def instructions() -> list[tuple[str, str]]:
    """(KEYWORD, arguments) for each instruction, continuation lines joined."""
    found, pending = [], ""
    for line in DOCKERFILE.read_text().splitlines():
        text = line.strip()
        if not text or text.startswith("#"):
            continue
        if text.endswith("\\"):
            pending += text[:-1] + " "
            continue
        keyword, _, arguments = (pending + text).partition(" ")
        found.append((keyword.upper(), arguments.strip()))
        pending = ""
    return found


def arguments_of(keyword: str) -> list[str]:
    return [arguments for name, arguments in instructions() if name == keyword]


def image_environment() -> dict[str, str]:
    environment = {}
    for arguments in arguments_of("ENV"):
        words = shlex.split(arguments)
        if "=" not in words[0]:  # the old `ENV NAME value` form
            environment[words[0]] = " ".join(words[1:])
            continue
        environment |= dict(word.split("=", 1) for word in words)
    return environment


def exec_form(arguments: str) -> list[str]:
    if arguments.startswith("["):
        return json.loads(arguments)
    return ["/bin/sh", "-c", arguments]


def exec_form_or_words(arguments: str) -> list[str]:
    return json.loads(arguments) if arguments.startswith("[") else arguments.split()


def healthcheck_command() -> list[str]:
    [arguments] = arguments_of("HEALTHCHECK")
    _, _, command = arguments.partition("CMD ")
    return exec_form(command.strip())


def container_command() -> list[str]:
    return exec_form(arguments_of("CMD")[-1])


def pip_commands() -> list[list[str]]:
    """Each `pip ...` step of the RUN instructions, in order."""
    steps = [shlex.split(step) for arguments in arguments_of("RUN") for step in arguments.split("&&")]
    return [words for words in steps if words[:1] == ["pip"]]


def pip_install_commands() -> list[list[str]]:
    commands = [words for words in pip_commands() if words[:2] == ["pip", "install"]]
    if not commands:
        pytest.fail("the Dockerfile has no `RUN pip install`")
    return commands


def locked_entries() -> dict[str, tuple[str, list[str]]]:
    """{canonical name: (version, its hash lines)} of requirements.lock (environment markers dropped)."""
    entries: dict[str, tuple[str, list[str]]] = {}
    details: list[str] = []  # the indented lines under the latest package
    for line in LOCK_FILE.read_text().splitlines():
        if line.startswith(" "):
            details.append(line.strip(" \\"))
        elif line and not line.startswith("#"):
            requirement, _, version = line.split(";")[0].strip(" \\").partition("==")
            assert version, f"{line!r}: every package in the lock is pinned with =="
            details = []
            entries[canonicalize_name(requirement)] = (version.strip(), details)
    return entries


def locked_versions() -> dict[str, str]:
    return {name: version for name, (version, _) in locked_entries().items()}


def copied_sources() -> list[tuple[str, str]]:
    """(source, destination) for each file or folder a COPY puts in the image."""
    pairs = []
    for arguments in arguments_of("COPY"):
        *sources, destination = [word for word in shlex.split(arguments) if not word.startswith("--")]
        pairs += [(source, destination) for source in sources]
    return pairs


def dockerignore_patterns() -> list[str]:
    lines = (line.strip() for line in DOCKERIGNORE.read_text().splitlines())
    return [line for line in lines if line and not line.startswith("#")]


# --- what the Dockerfile says


def test_the_image_starts_from_an_official_slim_python_image():
    [base] = arguments_of("FROM")

    image = base.split()[0].removeprefix("docker.io/").removeprefix("library/")
    name, _, tag = image.partition(":")
    assert name == "python"
    assert tag.endswith("-slim") or "-slim-" in tag


def test_the_image_installs_the_locked_packages_then_the_package_alone():
    locked, package = pip_install_commands()

    assert {"--no-deps", "--require-hashes"} <= set(locked)
    assert locked[locked.index("-r") + 1] == LOCK_FILE.name
    assert "--no-deps" in package
    assert [word for word in package[2:] if not word.startswith("-")] == ["."]
    assert "-e" not in package and "--editable" not in package
    assert ["pip", "check"] in pip_commands()


def test_the_lock_file_goes_into_the_build():
    assert LOCK_FILE.name in [source for source, _ in copied_sources()]


def test_the_lock_file_pins_every_runtime_dependency_of_the_package():
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    pins = locked_versions()

    for dependency in map(Requirement, project["dependencies"] + project["optional-dependencies"]["postgres"]):
        name = canonicalize_name(dependency.name)
        assert name in pins, f"{dependency.name} is not in {LOCK_FILE.name}: refresh it (see its first lines)"
        assert dependency.specifier.contains(pins[name], prereleases=True), (dependency, pins[name])


def test_the_lock_file_holds_hashes_for_every_package_and_no_test_tool():
    entries = locked_entries()

    for name, (_, details) in entries.items():
        assert any(line.startswith("--hash=sha256:") for line in details), name
    for tool in ("pytest", "httpx2", "aiosmtpd", "hypothesis", "playwright", "schemathesis"):
        assert tool not in entries


def test_the_usage_comment_sets_the_base_url():
    usage = [line for line in DOCKERFILE.read_text().splitlines() if line.startswith("#")]

    assert any("-e AUTHSITE_BASE_URL=" in line for line in usage)


def test_the_server_in_the_image_does_not_run_as_root():
    users = arguments_of("USER")

    assert users, "no USER line: the container would run as root"
    user = users[-1].split(":")[0]
    assert user not in ("root", "0")
    last_user = max(i for i, (name, _) in enumerate(instructions()) if name == "USER")
    last_run = max(i for i, (name, _) in enumerate(instructions()) if name == "RUN")
    assert last_user > last_run


def test_the_database_and_the_secret_key_live_in_the_data_volume():
    volumes = [volume for arguments in arguments_of("VOLUME") for volume in exec_form_or_words(arguments)]

    assert "/data" in volumes
    assert image_environment()["AUTHSITE_DATA_DIR"] == "/data"


def test_the_container_listens_on_every_interface_on_the_exposed_port():
    environment = image_environment()
    exposed = [port.split("/")[0] for arguments in arguments_of("EXPOSE") for port in arguments.split()]

    assert exposed == ["8000"]
    assert environment["AUTHSITE_HOST"] == "0.0.0.0"
    assert environment["AUTHSITE_PORT"] == "8000"


def test_every_authsite_variable_in_the_image_is_a_setting_authsite_reads(monkeypatch):
    variables = {name: value for name, value in image_environment().items() if name.startswith("AUTHSITE_")}
    for name, value in variables.items():
        assert name.removeprefix("AUTHSITE_").lower() in Settings.model_fields, name
        monkeypatch.setenv(name, value)

    settings = Settings(_env_file=None)

    assert settings.data_dir == Path("/data")
    assert settings.host == "0.0.0.0"
    assert settings.port == 8000


def test_the_healthcheck_asks_healthz_on_the_configured_port():
    command = " ".join(healthcheck_command())

    assert "/healthz" in command
    assert "AUTHSITE_PORT" in command


def test_the_container_command_is_the_installed_serve_command():
    scripts = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["scripts"]

    program, *arguments = container_command()

    assert scripts[program] == "authsite.cli:main"
    assert arguments == ["serve"]


@pytest.mark.parametrize("kept_out", [".git", "data", ".env", ".venv", "tests"])
def test_dockerignore_keeps_repository_extras_out_of_the_image(kept_out):
    assert kept_out in dockerignore_patterns()


@pytest.mark.parametrize(
    "left_behind",
    [".pytest_cache", ".hypothesis", "screenshots", "tests/e2e/node_modules", "node_modules", "bench",
     "authsite.egg-info", "build", "dist", ".coverage", "htmlcov"],
)
def test_dockerignore_covers_what_tests_and_builds_leave_behind(left_behind):
    assert any(fnmatch.fnmatch(left_behind, pattern.removeprefix("**/")) or fnmatch.fnmatch(left_behind, pattern)
               for pattern in dockerignore_patterns()), left_behind


def test_dockerignore_keeps_nothing_out_that_the_dockerfile_copies():
    for source, _ in copied_sources():
        assert not any(fnmatch.fnmatch(source, pattern) for pattern in dockerignore_patterns()), source


# --- the recipe, replayed in a clean virtual environment


@dataclass
class Image:
    """A virtual environment standing in for the image's Python."""

    bin: Path
    environment: dict[str, str]

    def run_python(self, code: str) -> str:
        result = subprocess.run(
            [str(self.bin / "python"), "-c", code], env=self.environment, capture_output=True, text=True, timeout=60
        )
        assert result.returncode == 0, result.stderr
        return result.stdout.strip()


def outside_environment(venv_bin: Path) -> dict[str, str]:
    """This process's environment without what would reach the source tree or a setting."""
    env = {name: value for name, value in os.environ.items()
           if not name.startswith("AUTHSITE_") and name not in ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME")}
    env["PATH"] = os.pathsep.join([str(venv_bin), env.get("PATH", "")])
    return env


def copy_like_the_dockerfile(build_dir: Path) -> None:
    ignored = shutil.ignore_patterns("__pycache__", "*.pyc")
    for source, destination in copied_sources():
        origin = REPO / source
        target = build_dir / destination
        if destination.endswith("/") or destination == ".":
            target = target / origin.name
        if origin.is_dir():
            shutil.copytree(origin, target, ignore=ignored)
        else:
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(origin, target)


@pytest.fixture(scope="module")
def image(tmp_path_factory) -> Image:
    root = tmp_path_factory.mktemp("image")
    venv, build_dir = root / "venv", root / "src"
    build_dir.mkdir()
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    copy_like_the_dockerfile(build_dir)
    environment = outside_environment(venv / "bin")
    for _, *pip_arguments in pip_commands():
        step = subprocess.run(
            [str(venv / "bin" / "python"), "-m", "pip", *pip_arguments],
            cwd=build_dir, env=environment, capture_output=True, text=True, timeout=INSTALL_TIMEOUT_SECONDS,
        )
        assert step.returncode == 0, f"pip {' '.join(pip_arguments)}:\n{step.stdout[-2000:]}{step.stderr[-3000:]}"
    # The build folder goes, as in the image (`rm -rf /src`): nothing may need it later.
    shutil.rmtree(build_dir)
    return Image(bin=venv / "bin", environment=environment)


@dataclass
class Container:
    url: str
    data_dir: Path
    environment: dict[str, str]
    workdir: Path


@pytest.fixture
def container(image, tmp_path, database_url, is_postgres):
    """The image's CMD run from the virtual environment, as the image would run it,
    but on a loopback port and a temporary data folder; stopped by PID afterwards."""
    data_dir, workdir = tmp_path / "volume", tmp_path / "workdir"
    workdir.mkdir()  # holds no source tree: only the installed package can run
    port = free_port()
    environment = image.environment | image_environment()
    environment |= {"AUTHSITE_DATA_DIR": str(data_dir), "AUTHSITE_HOST": "127.0.0.1", "AUTHSITE_PORT": str(port)}
    if is_postgres:
        environment["AUTHSITE_DATABASE_URL"] = database_url  # what the README's Postgres example sets
    log = tmp_path / "container.log"
    with log.open("w") as output:
        process = subprocess.Popen(
            container_command(), cwd=workdir, env=environment, stdout=output, stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + START_TIMEOUT_SECONDS
        while not answers(f"{url}/healthz"):
            if process.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"the container command did not start ({process.poll()}):\n{log.read_text()}")
            time.sleep(0.05)
        yield Container(url=url, data_dir=data_dir, environment=environment, workdir=workdir)
    finally:
        process.terminate()
        try:
            process.wait(timeout=STOP_TIMEOUT_SECONDS)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def answers(url: str) -> bool:
    try:
        return httpx2.get(url, timeout=1).status_code == 200
    except httpx2.TransportError:
        return False


def test_the_recipe_installs_the_package_and_no_test_tools(image):
    location = image.run_python("import authsite; print(authsite.__file__)")
    missing = image.run_python(
        f"import importlib.util; print([m for m in {DEV_TOOLS!r} if importlib.util.find_spec(m) is None])"
    )

    assert Path(location).is_relative_to(image.bin.parent)
    assert missing == repr(list(DEV_TOOLS))


def test_the_recipe_installs_the_postgres_driver(image):
    assert image.run_python("import asyncpg; print('ok')") == "ok"


def test_the_running_container_passes_its_own_healthcheck(container):
    check = subprocess.run(
        healthcheck_command(), cwd=container.workdir, env=container.environment,
        capture_output=True, text=True, timeout=30,
    )

    assert check.returncode == 0, check.stderr


def test_the_installed_package_serves_its_pages_and_static_files(container):
    login = httpx2.get(f"{container.url}/auth/login", timeout=10)
    css = httpx2.get(f"{container.url}/static/authsite.css", timeout=10)

    assert login.status_code == 200
    assert 'name="password"' in login.text
    assert css.status_code == 200
    assert css.text == (REPO / "static" / "authsite.css").read_text()


def test_the_generated_secret_key_is_private_in_the_data_volume(container):
    key = container.data_dir / "secret_key"

    assert key.is_file()
    assert stat.S_IMODE(key.stat().st_mode) == 0o600


@pytest.mark.sqlite_only
def test_the_sqlite_database_is_in_the_data_volume(container):
    assert (container.data_dir / "authsite.db").is_file()


@pytest.mark.postgres_only
def test_with_a_postgres_url_the_container_uses_postgres(container, database_url):
    assert {"user", "session", "auth_event"} <= postgres_tables(database_url)
    assert not (container.data_dir / "authsite.db").exists()


def postgres_tables(url: str) -> set[str]:
    async def names():
        engine = create_async_engine(url)
        try:
            async with engine.connect() as conn:
                return set(await conn.run_sync(lambda sync_conn: inspect(sync_conn).get_table_names()))
        finally:
            await engine.dispose()

    return asyncio.run(names())


def test_the_healthcheck_fails_when_nothing_answers(image):
    environment = image.environment | image_environment() | {"AUTHSITE_PORT": str(free_port())}

    check = subprocess.run(healthcheck_command(), env=environment, capture_output=True, text=True, timeout=30)

    assert check.returncode != 0
