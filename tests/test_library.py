"""Library use: authsite installed into someone else's FastAPI app, and the example."""

import contextlib
import importlib.util
from pathlib import Path

import pytest
from fastapi import Depends, FastAPI, Request
from fastapi.testclient import TestClient

import authsite
from authsite import AuthSite, CurrentUser, accounts
from support import PASSWORD, log_in

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "existing_app.py"


def build_foreign_app(settings) -> tuple[FastAPI, AuthSite]:
    """An app with its own lifespan and routes, written before authsite was added."""

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI):
        app.state.flag = "started"
        yield
        app.state.flag = "stopped"

    app = FastAPI(lifespan=lifespan)
    auth = AuthSite(settings)
    auth.install(app)

    @app.get("/ping")
    async def ping() -> dict:
        return {"pong": True}

    @app.get("/dashboard")
    async def dashboard(user: CurrentUser) -> dict:
        return {"hello": user.username}

    @app.get("/reports", dependencies=[Depends(auth.require("admin"))])
    async def reports() -> dict:
        return {"reports": []}

    @app.get("/whoami")
    async def whoami(request: Request) -> dict:
        return {
            "authenticated": request.user.is_authenticated,
            "username": request.user.username,
            "scopes": sorted(request.auth.scopes),
        }

    return app, auth


@pytest.fixture
def foreign(settings):
    app, auth = build_foreign_app(settings)
    with TestClient(app, base_url="http://testserver", follow_redirects=False) as client:
        yield app, auth, client


@pytest.fixture
def foreign_client(foreign):
    return foreign[2]


@pytest.fixture
def add_user(foreign):
    """Create a user in the foreign app's database, on the app's own loop."""
    _, auth, client = foreign

    def add(username: str, scopes=("authenticated",)):
        async def create():
            async with auth.database.sessionmaker() as db:
                await accounts.create_user(
                    db=db, hasher=auth.hasher, username=username, password=PASSWORD, scopes=scopes
                )

        client.portal.call(create)

    return add


def load_example():
    # A fresh module each time, so it reads this test's environment.
    spec = importlib.util.spec_from_file_location(f"existing_app_{id(object())}", EXAMPLE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_public_api_exports_the_site_and_the_guards():
    from authsite import AuthSite, Settings, admin_user, already_logged_in, logged_in, require, super_user

    assert Settings is authsite.config.Settings
    assert {"AuthSite", "Settings", "logged_in", "already_logged_in", "admin_user", "super_user", "require"} <= set(
        authsite.__all__
    )
    assert (AuthSite.logged_in, AuthSite.already_logged_in) == (logged_in, already_logged_in)
    assert (AuthSite.admin_user, AuthSite.super_user, AuthSite.require) == (admin_user, super_user, require)


def test_the_guards_are_reachable_on_the_instance(settings):
    auth = AuthSite(settings)

    assert auth.logged_in is authsite.logged_in
    assert auth.admin_user is authsite.admin_user
    assert auth.require is authsite.require


def test_the_apps_own_routes_keep_working(foreign_client):
    assert foreign_client.get("/ping").json() == {"pong": True}


def test_the_apps_own_lifespan_still_runs(settings):
    app, auth = build_foreign_app(settings)

    with TestClient(app):
        assert app.state.flag == "started"
        assert auth.database is not None
    assert app.state.flag == "stopped"


def test_the_login_page_works_in_the_foreign_app(foreign_client, add_user):
    add_user("alice")

    assert log_in(foreign_client).status_code == 303
    assert foreign_client.get("/api/me").json()["username"] == "alice"


def test_request_user_and_auth_are_anonymous_on_own_routes(foreign_client):
    assert foreign_client.get("/whoami").json() == {"authenticated": False, "username": "", "scopes": []}


def test_request_user_and_auth_name_the_logged_in_user_on_own_routes(foreign_client, add_user):
    add_user("alice")
    log_in(foreign_client)

    assert foreign_client.get("/whoami").json() == {
        "authenticated": True, "username": "alice", "scopes": ["authenticated"],
    }


def test_an_anonymous_visitor_is_sent_to_log_in_from_the_dashboard(foreign_client):
    response = foreign_client.get("/dashboard")

    assert response.status_code == 303
    assert response.headers["location"] == "/auth/login?next=%2Fdashboard"


def test_a_logged_in_user_sees_the_dashboard(foreign_client, add_user):
    add_user("alice")
    log_in(foreign_client)

    assert foreign_client.get("/dashboard").json() == {"hello": "alice"}


def test_a_user_without_admin_is_refused_the_reports(foreign_client, add_user):
    add_user("alice")
    log_in(foreign_client)

    assert foreign_client.get("/reports").status_code == 403


def test_an_admin_sees_the_reports(foreign_client, add_user):
    add_user("boss", scopes=("authenticated", "admin"))
    log_in(foreign_client, "boss")

    response = foreign_client.get("/reports")

    assert response.status_code == 200
    assert response.json() == {"reports": []}


def test_the_example_app_serves_its_own_route_and_guards_the_dashboard(monkeypatch, tmp_path, database_url):
    monkeypatch.setenv("AUTHSITE_DATA_DIR", str(tmp_path / "example-data"))
    monkeypatch.setenv("AUTHSITE_DATABASE_URL", database_url)
    monkeypatch.setenv("AUTHSITE_ALLOWED_HOSTS", "testserver")  # TestClient's Host
    example = load_example()

    with TestClient(example.app, follow_redirects=False) as client:
        assert client.get("/ping").json() == {"pong": True}
        response = client.get("/dashboard")

    assert response.status_code == 303
    assert response.headers["location"] == "/auth/login?next=%2Fdashboard"
    # It read this environment: its key went to the data dir we named.
    assert (tmp_path / "example-data" / "secret_key").is_file()


def test_a_host_app_puts_its_logo_on_the_login_page_by_filling_one_block(make_settings, tmp_path):
    folder = tmp_path / "my_templates"
    folder.mkdir()
    (folder / "login.html").write_text(
        '{% extends "authsite/login.html" %}{% block brand %}<img src="/logo.svg" alt="Example Club">{% endblock %}'
    )
    app = FastAPI()
    AuthSite(make_settings(), templates_dir=folder).install(app)

    with TestClient(app) as client:
        page = client.get("/auth/login")

    assert page.status_code == 200
    assert '<img src="/logo.svg" alt="Example Club">' in page.text
    assert 'name="password"' in page.text  # the rest of our page is still there
