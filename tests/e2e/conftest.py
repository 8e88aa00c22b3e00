"""Browser tests: the real site (`python run.py`) on a loopback port, driven by Debian's Chromium.

One server and one browser serve the whole run; every test gets a fresh browser
context (its own cookies), and users of its own made with `run.py create-user`, so
no test depends on another. The server has a throwaway data directory: SQLite, a
fixed secret key, generous rate limits, and no SMTP, so mail lands in its outbox.

The console rule. Every page a test opens is watched, and the test fails at
teardown if any page logged a console error, threw an uncaught error, or reported
a Content-Security-Policy violation. One exception, on purpose: Chromium logs
"Failed to load resource: the server responded with a status of N" whenever a
page itself is answered with a 4xx status, which our site does by design (401 for
a failed login, 403 for a missing permission or a refused form, 400 for a bad
link). That message is allowed only when (a) the test declared the status with
`watch.expect_status(N)` and (b) the browser really received a page (a document
response) with that status at that URL. Any other console error, even a 4xx for a
stylesheet or a status the test did not ask for, fails the test.
"""

import email.policy
import itertools
import os
import re
import sqlite3
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from email import message_from_bytes
from pathlib import Path

import pytest

from e2e_common import DESKTOP, PLAYWRIGHT_MISSING, REPO, User
from support import free_port, stop_process

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--no-first-run",
]
RUN_PY = REPO / "run.py"
SCREENSHOTS = REPO / "screenshots"
# Generous deadlines for things that happen in the background (a server starting,
# a mail being written); they bound a wait, they never decide a test's outcome.
START_DEADLINE_SECONDS = 30
MAIL_DEADLINE_SECONDS = 15
# Chromium's own line for a page answered with an error status.
FAILED_RESOURCE = re.compile(r"^Failed to load resource: the server responded with a status of (\d{3})\b")
# Runs in every page before the site's own code; reports CSP violations to the
# test (through the exposed binding, which survives navigation) and keeps them
# on window for a look from the page itself.
CSP_WATCHER = """
window.__cspViolations = [];
document.addEventListener("securitypolicyviolation", (event) => {
  const seen = `${event.violatedDirective} blocked ${event.blockedURI || "inline"} on ${document.location.href}`;
  window.__cspViolations.push(seen);
  window.__reportCspViolation(seen);
});
"""


@dataclass
class Site:
    url: str
    data_dir: Path
    env: dict[str, str]

    def run(self, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess:
        """`python run.py *args` against this site's database, as its operator would."""
        result = subprocess.run(
            [sys.executable, str(RUN_PY), *args],
            cwd=self.data_dir.parent, env=self.env, input=stdin, capture_output=True, text=True, timeout=60,
        )
        assert result.returncode == 0, result.stderr
        return result

    def age_sessions(self, username: str) -> None:
        """The user's sessions last proved who they are long ago: past the sudo window."""
        db = sqlite3.connect(self.data_dir / "authsite.db")
        try:
            with db:
                db.execute(
                    "UPDATE session SET authenticated_at = '2000-01-01 00:00:00.000000' "
                    "WHERE user_id = (SELECT id FROM user WHERE username = ?)", (username,),
                )
        finally:
            db.close()

    def mail_to(self, address: str) -> str:
        """The body of the newest mail in the outbox addressed to `address`, waiting for it if need be."""
        deadline = time.monotonic() + MAIL_DEADLINE_SECONDS
        while True:
            for path in sorted((self.data_dir / "outbox").glob("*.eml"), reverse=True):
                message = message_from_bytes(path.read_bytes())
                if message["To"] == address:
                    return message_from_bytes(path.read_bytes(), policy=email.policy.default).get_body(
                        ("plain",)).get_content()
            if time.monotonic() > deadline:
                raise AssertionError(f"no mail to {address} arrived in the outbox")
            time.sleep(0.05)

    def mails_to(self, address: str) -> list[str]:
        """The bodies of every mail in the outbox addressed to `address` so far, oldest first (no waiting)."""
        paths = sorted((self.data_dir / "outbox").glob("*.eml"), key=lambda p: (p.stat().st_mtime_ns, p.name))
        raw = [path.read_bytes() for path in paths]
        return [message_from_bytes(data, policy=email.policy.default).get_body(("plain",)).get_content()
                for data in raw if message_from_bytes(data)["To"] == address]

    def mail_matching(self, address: str, pattern: re.Pattern) -> re.Match:
        """`pattern` found in the newest mail to `address` that has it, waiting for one if need be. For an
        address that gets several mails (a notice of a new sign-in, then a link), which arrive in the
        background in no set order."""
        deadline = time.monotonic() + MAIL_DEADLINE_SECONDS
        while True:
            found = [match for body in self.mails_to(address) if (match := pattern.search(body))]
            if found:
                return found[-1]
            if time.monotonic() > deadline:
                raise AssertionError(f"no mail to {address} matching {pattern.pattern!r} arrived in the outbox:\n"
                                     + "\n---\n".join(self.mails_to(address)))
            time.sleep(0.05)


@dataclass
class Watch:
    """What the pages of one test logged that they should not have (see the module docstring)."""

    expected_statuses: set[int] = field(default_factory=set)
    document_statuses: set[tuple[str, int]] = field(default_factory=set)
    console_errors: list[tuple[str, str]] = field(default_factory=list)
    page_errors: list[str] = field(default_factory=list)
    csp_violations: list[str] = field(default_factory=list)

    def expect_status(self, status: int) -> None:
        """This test means to be answered `status` for a page: Chromium's line about it is fine."""
        self.expected_statuses.add(status)

    def attach(self, page) -> None:
        page.on("console", self._on_console)
        page.on("pageerror", lambda error: self.page_errors.append(str(error)))
        page.on("response", self._on_response)

    def _on_console(self, message) -> None:
        if message.type == "error":
            self.console_errors.append((message.text, message.location.get("url", "")))

    def _on_response(self, response) -> None:
        if response.request.resource_type == "document":
            self.document_statuses.add((response.url, response.status))

    def problems(self) -> list[str]:
        found = [f"console error: {text} (at {url})" for text, url in self.console_errors if not self._is_expected(text, url)]
        found += [f"uncaught page error: {error}" for error in self.page_errors]
        found += [f"CSP violation: {violation}" for violation in self.csp_violations]
        return found

    def _is_expected(self, text: str, url: str) -> bool:
        match = FAILED_RESOURCE.match(text)
        if not match:
            return False
        status = int(match.group(1))
        return status in self.expected_statuses and (url, status) in self.document_statuses


# The site and the browser, once per run


@pytest.fixture(scope="session")
def live_site(tmp_path_factory) -> Iterator[Site]:
    yield from _serve(tmp_path_factory.mktemp("e2e-site"), host_name="127.0.0.1")


@pytest.fixture(scope="session")
def passkey_site(tmp_path_factory) -> Iterator[Site]:
    """A second site, reached as http://localhost:PORT: browsers offer passkeys only on a host
    name (https, or localhost), so this one has them, and live_site (an IP address) has none."""
    yield from _serve(tmp_path_factory.mktemp("e2e-passkey-site"), host_name="localhost")


@pytest.fixture
def empty_site(tmp_path_factory) -> Iterator[Site]:
    """A site of one test alone with no user at all (live_site has the other tests' users): its start
    prints the setup link into server.log, beside its data dir."""
    yield from _serve(tmp_path_factory.mktemp("e2e-empty-site"), host_name="127.0.0.1")


def _serve(root: Path, *, host_name: str) -> Iterator[Site]:
    """`python run.py` in `root` on a free loopback port, its base URL on `host_name`, until the run ends."""
    data_dir = root / "data"
    port = free_port()
    url = f"http://{host_name}:{port}"
    env = {name: value for name, value in os.environ.items() if not name.startswith("AUTHSITE_")}
    env |= {
        "AUTHSITE_DATA_DIR": str(data_dir),
        "AUTHSITE_HOST": "127.0.0.1",
        "AUTHSITE_PORT": str(port),
        "AUTHSITE_BASE_URL": url,
        "AUTHSITE_SECRET_KEY": "e2e-" + "k" * 60,
        "AUTHSITE_LOG_LEVEL": "warning",
        "AUTHSITE_LOGIN_MAX_FAILURES": "1000",
        "AUTHSITE_LOGIN_IP_MAX_FAILURES": "1000",
        "AUTHSITE_SIGNUP_MAX_PER_IP": "1000",
        "AUTHSITE_RESET_MAX_PER_IP": "1000",
        # What a plain admin may hand out (the admin tests check its box).
        "AUTHSITE_ADMIN_GRANTABLE_SCOPES": "reports",
    }
    log = (root / "server.log").open("w")
    server = subprocess.Popen([sys.executable, str(RUN_PY)], cwd=root, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        _wait_until_serving(server, url, root / "server.log")
        yield Site(url=url, data_dir=data_dir, env=env)
    finally:
        stop_process(server, timeout=15)
        log.close()


def _wait_until_serving(server: subprocess.Popen, url: str, log: Path) -> None:
    deadline = time.monotonic() + START_DEADLINE_SECONDS
    while True:
        if server.poll() is not None:
            raise RuntimeError(f"run.py exited with {server.returncode}:\n{log.read_text()}")
        try:
            with urllib.request.urlopen(f"{url}/healthz", timeout=2) as answer:
                if answer.status == 200:
                    return
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"run.py did not answer on {url}:\n{log.read_text()}")
        time.sleep(0.1)


@pytest.fixture(scope="session")
def browser() -> Iterator:
    sync_api = pytest.importorskip("playwright.sync_api", reason=PLAYWRIGHT_MISSING)
    if not CHROMIUM.exists():
        pytest.skip(f"no Chromium at {CHROMIUM}: apt-get install chromium")
    with sync_api.sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True)
        yield chromium
        chromium.close()


@pytest.fixture(scope="session")
def screenshots() -> Path:
    """The folder CI keeps as output: every page at phone and desktop size (git-ignored).
    Pictures are overwritten, not wiped first, so a run of a few tests keeps the rest."""
    SCREENSHOTS.mkdir(exist_ok=True)
    return SCREENSHOTS


# Per test: fresh contexts, watched pages, users of its own


@pytest.fixture
def watch(request) -> Iterator[Watch]:
    seen = Watch()
    yield seen
    if getattr(request.node, "rep_call_passed", False):
        problems = seen.problems()
        assert not problems, "the pages logged problems:\n" + "\n".join(problems)


@pytest.fixture
def new_context(browser, live_site, watch) -> Iterator[Callable]:
    """A fresh browser context (its own cookies, like another browser or device); every page in it is watched."""
    contexts = []

    def make(*, viewport=DESKTOP, **options):
        context = browser.new_context(base_url=live_site.url, viewport=viewport, **options)
        context.expose_binding("__reportCspViolation", lambda source, seen: watch.csp_violations.append(seen))
        context.add_init_script(CSP_WATCHER)
        context.on("page", watch.attach)
        contexts.append(context)
        return context

    yield make
    for context in contexts:
        context.close()


@pytest.fixture
def page(new_context):
    return new_context().new_page()


_names = itertools.count(1)


@pytest.fixture
def new_user(live_site) -> Callable[..., User]:
    """A new user of this test alone, made with `run.py create-user`."""

    def make(name: str = "user", *scopes: str, email: bool = False) -> User:
        user = User(username=f"{name}{next(_names)}")
        args = ["create-user", user.username, "--password-stdin"]
        if email:
            user.email = f"{user.username}@example.com"
            args += ["--email", user.email]
        for scope in scopes:
            args += ["--scope", scope]
        live_site.run(*args, stdin=user.password + "\n")
        return user

    return make


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(config, items):
    # The browser tests run last. Playwright's sync API keeps its event loop
    # marked as running in the main thread while the browser is open (the whole
    # session), and any later test calling asyncio.run() would then fail.
    here = Path(__file__).parent
    items.sort(key=lambda item: item.path.is_relative_to(here))  # stable: each group keeps its order


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    # The console check at teardown is skipped when the test itself already
    # failed: one clear failure beats two.
    outcome = yield
    report = outcome.get_result()
    if report.when == "call":
        item.rep_call_passed = report.passed
