"""AuthSite: wires settings, database, middleware, routers and handlers into a FastAPI app."""

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable
from datetime import timedelta
from functools import partial
from http import HTTPStatus
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from sqlalchemy.exc import SQLAlchemyError
from starlette.exceptions import HTTPException
from starlette.responses import JSONResponse, Response

from authsite import accounts, errors, events, guards, pending, resets, sessions, strength
from authsite.body_limit import BodyLimit
from authsite.config import Settings, local_path
from authsite.csrf import Csrf
from authsite.db import Database
from authsite.headers import SecurityHeaders
from authsite.hosts import AllowedHosts
from authsite.factors.passkeys import Passkeys, RelyingParty, purge_used_challenges
from authsite.factors.second_factors import SecondFactors
from authsite.first_admin import SetupLinks
from authsite.known_devices import DeviceCookies
from authsite.logins import Logins
from authsite.mail import Mailer
from authsite.middleware import AuthMiddleware
from authsite.models import utcnow
from authsite.notices import Notices
from authsite.passkey_logins import PasskeyLogins
from authsite.passwords import PasswordHasher
from authsite.sign_in_codes import SignInCodes
from authsite.static_assets import StaticAssets
from authsite.second_step import SecondStep
from authsite.secret_key import load_or_create_secret_key
from authsite.session_reader import SessionReader, open_reader
from authsite.templating import Pages, resource_dir
from authsite.throttle import Limits, Throttle
from authsite.web.account import account_router
from authsite.web.admin import admin_router
from authsite.web.api import api_router
from authsite.web.auth import auth_router
from authsite.web.confirm import confirm_router
from authsite.web.database_down import AnswerDatabaseDown, DatabaseDownAnswer
from authsite.web.email import EmailLinks, email_router
from authsite.web.sign_in_code import sign_in_code_api_router, sign_in_code_router
from authsite.web.deps import checked_form
from authsite.web.gate import RouteGate, document_routes
from authsite.web.mfa import mfa_router
from authsite.web.pages import health_router, home_router
from authsite.web.passkeys import passkey_api_router, passkey_pages_router
from authsite.web.register import register_router
from authsite.web.reset import reset_router
from authsite.web.security import security_router
from authsite.web.setup import setup_api_router, setup_router

log = logging.getLogger("authsite")

PURGE_INTERVAL_SECONDS = 300
# How long stopping waits for a purge in flight (each statement is bounded on Postgres anyway).
PURGE_STOP_SECONDS = 10
ADMIN_SCOPES = ("authenticated", "admin", "super")
LIMITED_BODY_PREFIXES = ("/auth/", "/account", "/admin", "/api/")


class AuthSite:
    """Login, sessions and permissions for one FastAPI app: `AuthSite(Settings()).install(app)`."""

    logged_in = staticmethod(guards.logged_in)
    already_logged_in = staticmethod(guards.already_logged_in)
    admin_user = staticmethod(guards.admin_user)
    super_user = staticmethod(guards.super_user)
    require = staticmethod(guards.require)

    def __init__(
        self,
        settings: Settings,
        *,
        templates_dir: Path | None = None,
        static_path: str = "/static",
        security_headers: bool = True,
        site_name: str | None = None,
        login_redirect: str | None = None,
        logout_redirect: str | None = None,
    ):
        self.settings = settings
        self.name = site_name or settings.site_name  # AUTHSITE_SITE_NAME, unless the host app names it
        # Where logins without `next`, sign-ups and logouts land (AUTHSITE_LOGIN_REDIRECT and
        # AUTHSITE_LOGOUT_REDIRECT, unless the host app says): a host app may have no page at "/".
        self.login_redirect = _landing("login_redirect", login_redirect or settings.login_redirect)
        self.logout_redirect = _landing("logout_redirect", logout_redirect or settings.logout_redirect)
        self.static_path = static_path.rstrip("/")
        self.security_headers = security_headers
        self.lifetimes = sessions.Lifetimes.from_seconds(
            idle=settings.session_idle_seconds,
            max=settings.session_max_seconds,
            remember=settings.remember_seconds,
        )
        self.hasher = PasswordHasher()
        self.assets = StaticAssets(resource_dir("static"), url_prefix=self.static_path)
        self.relying_party = RelyingParty.from_base_url(settings.public_url, name=self.name)
        self.pages = Pages(
            templates_dir=templates_dir, static_url=self.assets.url, site_name=self.name,
            allow_signup=settings.allow_signup, passkeys=self.relying_party.available,
            login_by_code=settings.login_by_code, home=self.login_redirect,
        )
        self.mailer = Mailer(smtp_url=settings.smtp_url, outbox_dir=settings.data_dir / "outbox")
        self.notices = Notices(mailer=self.mailer, site=self.name, base_url=settings.public_url)
        self.sudo_window = timedelta(seconds=settings.sudo_seconds)
        self.checked_form = checked_form(lambda: self.csrf)
        self.database: Database | None = None
        self.reader: SessionReader | None = None
        self.audit: events.AuditLog | None = None
        self.throttle: Throttle | None = None
        self.logins: Logins | None = None
        self.limits = Limits.from_settings(settings)
        self.csrf: Csrf | None = None
        self.devices: DeviceCookies | None = None
        self.factors: SecondFactors | None = None
        self.second_step: SecondStep | None = None
        self.passkeys: Passkeys | None = None
        self.passkey_logins: PasskeyLogins | None = None
        self.email_links: EmailLinks | None = None
        self.sign_in_codes: SignInCodes | None = None
        self.setup_links: SetupLinks | None = None
        self._purger: asyncio.Task | None = None

    def install(self, app: FastAPI) -> None:
        """Add authsite to `app`: lifespan, middleware, routes, static files, handlers."""
        app.state.authsite = self
        _chain_lifespan(app, self.lifespan)
        database_down = DatabaseDownAnswer(self.pages.render)
        app.add_middleware(
            AuthMiddleware, lookup=self.lookup, unavailable=database_down, cookie_secure=self.settings.cookie_secure,
            hosts=AllowedHosts(self.settings.allowed_host_names), headers=SecurityHeaders(page_headers=self.security_headers),
            body_limit=BodyLimit(prefixes=LIMITED_BODY_PREFIXES), routes=app.router.routes,
            skip_prefixes=(self.static_path + "/",), mfa_required=self.settings.mfa_required,
        )
        api, passkey_api, code_api = api_router(self), passkey_api_router(self), sign_in_code_api_router(self)
        setup_api = setup_api_router(self)
        served = [
            self.assets.route(),
            auth_router(self), passkey_pages_router(self), mfa_router(self), confirm_router(self), email_router(self),
            sign_in_code_router(self),
            register_router(self), reset_router(self), security_router(self), account_router(self),
            admin_router(self), api, passkey_api, code_api, health_router(self), setup_router(self), setup_api,
        ]
        answered = partial(AnswerDatabaseDown, answer=database_down)
        app.router.routes.append(RouteGate(served, dependency_overrides_provider=app, around=answered))
        document_routes(app, [api, passkey_api, code_api, setup_api])
        errors.install_handlers(app, self.pages.render, cookie_secure=self.settings.cookie_secure, home=self.login_redirect)

    @contextlib.asynccontextmanager
    async def lifespan(self, app: FastAPI) -> AsyncIterator[None]:
        await self.start()
        try:
            yield
        finally:
            await self.stop()

    async def start(self) -> None:
        for warning in self.lifetimes.short_ones():
            log.warning(warning)
        key = self.settings.secret_key
        secret = key.get_secret_value() if key else load_or_create_secret_key(self.settings.data_dir)
        self.csrf = Csrf(secret, cookie_secure=self.settings.cookie_secure)
        self.devices = DeviceCookies(secret)
        self.factors = SecondFactors(secret, issuer=self.name)
        self.passkeys = Passkeys(secret, relying_party=self.relying_party)
        self.pages.csrf = self.csrf
        self.database = Database(self.settings.resolved_database_url)
        await self.database.create_schema()
        self.reader = await open_reader(self.database.engine, sessions.LOOKUP)
        self.audit = events.AuditLog(self.database)
        self.throttle = Throttle(self.database)
        self.logins = Logins(database=self.database, hasher=self.hasher, limits=self.limits, lifetimes=self.lifetimes,
                             email_required=self.settings.email_verification == "mandatory")
        self.email_links = EmailLinks(self, secret)
        self.sign_in_codes = SignInCodes(secret_key=secret, lifetimes=self.lifetimes)
        self.setup_links = SetupLinks(database=self.database, secret_key=secret)
        self.second_step = SecondStep(database=self.database, factors=self.factors, passkeys=self.passkeys,
                                      limits=self.limits, lifetimes=self.lifetimes)
        self.passkey_logins = PasskeyLogins(database=self.database, passkeys=self.passkeys, limits=self.limits,
                                            lifetimes=self.lifetimes)
        await self.hasher.warm_up()
        await self._bootstrap_admin()
        await self.mailer.start()
        self._stopping = asyncio.Event()
        self._purger = asyncio.create_task(self._purge_expired_rows_forever())

    async def stop(self) -> None:
        await self.mailer.stop()
        if self._purger:
            # Let a purge in flight finish: cancelled mid-statement, an asyncpg connection is left
            # with an answer nobody reads ("Future exception was never retrieved" in the log).
            self._stopping.set()
            try:
                await asyncio.wait_for(asyncio.shield(self._purger), PURGE_STOP_SECONDS)
            except TimeoutError:
                self._purger.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await self._purger
            self._purger = None
        if self.reader:
            await self.reader.close()
            self.reader = None
        if self.database:
            await self.database.dispose()
        # The worker processes go with the app, waited for (a hash at most) in a thread: exiting
        # first would leave their queues' semaphores for multiprocessing to complain about.
        await asyncio.to_thread(self.hasher.close, wait=True)
        await asyncio.to_thread(strength.stop_worker)

    def lookup(self, token: str) -> Awaitable[sessions.ActiveSession | None]:
        # Not a coroutine of its own: the middleware awaits the one it returns, a frame less per request.
        return sessions.get_user_by_session_token(
            reader=self.reader, database=self.database, token=token, lifetimes=self.lifetimes
        )

    async def db_session(self):
        async with self.database.sessionmaker() as db:
            yield db

    async def _bootstrap_admin(self) -> None:
        name, password = self.settings.admin_username, self.settings.admin_password
        if not name or not password:
            return
        async with self.database.sessionmaker() as db:
            if await accounts.get_user_by_username(db, name):
                return
            try:
                user = await accounts.create_user(
                    db=db, hasher=self.hasher, username=name,
                    password=password.get_secret_value(), scopes=ADMIN_SCOPES,
                )
            except accounts.AccountError as exc:
                if exc.message == accounts.USERNAME_TAKEN:
                    return  # another worker created it first
                raise StartupError(f"AUTHSITE_ADMIN_{exc.field.upper()}: {exc.message}") from None
        await self.audit.record(events.Kind.USER_CREATED, user_id=user.id, via="AUTHSITE_ADMIN_USERNAME")

    async def _purge_expired_rows_forever(self) -> None:
        while True:
            try:
                await sessions.purge_expired(engine=self.database.engine)
                await self.database.run(partial(pending.purge_expired, now=utcnow()))
                await self.database.run(partial(purge_used_challenges, now=utcnow()))
                async with self.database.sessionmaker() as db:
                    await resets.purge_expired_resets(db=db)
                    retention = timedelta(days=self.settings.audit_retention_days)
                    await events.prune_events(db=db, older_than=retention)
                await self.throttle.prune(older_than=self.limits.longest_window)
            except (SQLAlchemyError, OSError, TimeoutError) as exc:
                log.warning("could not purge expired rows (%s); will retry", type(exc).__name__)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), PURGE_INTERVAL_SECONDS)
            if self._stopping.is_set():
                return


class StartupError(Exception):
    """A setting that passed validation but cannot work (e.g. a weak admin password)."""


def _landing(name: str, path: str) -> str:
    try:
        return local_path(path)
    except ValueError as exc:
        raise ValueError(f"{name}: {exc}") from None


def create_app(settings: Settings | None = None, **site_options) -> FastAPI:
    """The standalone authsite site that `python run.py` serves."""
    settings = settings or Settings()
    # No /docs: Swagger UI loads its scripts from a CDN, which the site's CSP refuses.
    openapi_url = "/openapi.json" if settings.openapi else None  # AUTHSITE_OPENAPI
    app = FastAPI(title="authsite", docs_url=None, redoc_url=None, openapi_url=openapi_url)
    site = AuthSite(settings, **site_options)
    site.install(app)
    app.include_router(home_router(site))
    _install_error_pages(app, site)
    return app


def _install_error_pages(app: FastAPI, site: AuthSite) -> None:
    """HTML error pages for the standalone site; JSON stays JSON for API calls."""

    async def http_error(request: Request, exc: HTTPException) -> Response:
        if errors.is_api_request(request):
            return JSONResponse({"detail": exc.detail}, status_code=exc.status_code, headers=exc.headers)
        # Starlette's bare reason phrase ("Not Found") under our own title would say it twice, differently.
        message = _MESSAGES.get(exc.status_code, exc.detail) if exc.detail == _phrase(exc.status_code) else exc.detail
        context = {"title": _TITLES.get(exc.status_code, "Something went wrong"), "message": message}
        return site.pages.render(request, "error.html", context, status_code=exc.status_code)

    async def invalid_request(request: Request, exc: RequestValidationError) -> Response:
        if errors.is_api_request(request):
            return JSONResponse({"detail": jsonable_errors(exc)}, status_code=422)
        context = {"title": "Invalid request", "message": "; ".join(_messages(exc))}
        return site.pages.render(request, "error.html", context, status_code=422)

    app.add_exception_handler(HTTPException, http_error)
    app.add_exception_handler(RequestValidationError, invalid_request)


_TITLES = {400: "Bad request", 404: "Page not found", 405: "Method not allowed", 413: "Too large", 415: "Wrong form type"}
_MESSAGES = {
    404: "There is no page at this address. Check it for typing mistakes, or start again from the home page.",
    405: "This page cannot be used that way. Go back and use its links and buttons.",
}


def _phrase(status_code: int) -> str | None:
    try:
        return HTTPStatus(status_code).phrase
    except ValueError:
        return None


def jsonable_errors(exc: RequestValidationError) -> list[dict]:
    return [{"loc": list(e.get("loc", ())), "msg": e.get("msg", ""), "type": e.get("type", "")} for e in exc.errors()]


def _messages(exc: RequestValidationError) -> list[str]:
    return [f"{'.'.join(str(p) for p in e.get('loc', ()))}: {e.get('msg', '')}" for e in exc.errors()]


def _chain_lifespan(app: FastAPI, outer) -> None:
    """Run authsite's startup around whatever lifespan the app already has."""
    inner = app.router.lifespan_context

    @contextlib.asynccontextmanager
    async def lifespan(app_: FastAPI):
        async with outer(app_):
            async with inner(app_) as state:
                yield state

    app.router.lifespan_context = lifespan
