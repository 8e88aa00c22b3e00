"""Jinja2 pages: our templates (overridable by a folder of the site's own) and the CSRF token each form needs."""

from collections.abc import Callable
from pathlib import Path
from typing import Any

import jinja2
from starlette.requests import Request
from starlette.responses import Response
from starlette.templating import Jinja2Templates

from authsite import compression, cookies, events, flash
from authsite.csrf import Csrf

PACKAGE_DIR = Path(__file__).resolve().parent


def resource_dir(name: str) -> Path:
    """`templates` or `static`: inside the installed package, or at the top of a source checkout."""
    installed = PACKAGE_DIR / name
    return installed if installed.is_dir() else PACKAGE_DIR.parent / name


class Pages:
    def __init__(self, *, templates_dir: Path | None, static_url: Callable[[str], str], site_name: str, allow_signup: bool,
                 passkeys: bool = False, login_by_code: bool = False, home: str = "/"):
        ours = jinja2.FileSystemLoader(str(resource_dir("templates")))
        # The site's own folder first, then ours; ours also as "authsite/<name>", so a site's
        # login.html can extend "authsite/login.html" and fill one block (a logo) instead of copying it.
        theirs = [jinja2.FileSystemLoader(str(templates_dir))] if templates_dir else []
        loader = jinja2.ChoiceLoader([*theirs, ours, jinja2.PrefixLoader({"authsite": ours})])
        env = jinja2.Environment(loader=loader, autoescape=True, auto_reload=False)
        env.globals["site_name"] = site_name
        env.globals["allow_signup"] = allow_signup
        env.globals["login_by_code"] = login_by_code
        env.globals["home"] = home  # where "home page" links go: the login redirect (a host app may have no "/")
        env.globals["passkeys"] = passkeys  # whether the site can offer passkeys (its base URL allows them)
        env.filters["when"] = _when
        env.filters["describe_event"] = events.describe
        env.globals["static"] = static_url  # a file's content-hashed address (authsite/static_assets.py)
        self.templates = Jinja2Templates(env=env)
        self.csrf: Csrf | None = None

    def render(
        self, request: Request, name: str, context: dict[str, Any] | None = None, *, status_code: int = 200
    ) -> Response:
        token = _FormToken(self.csrf, request)
        secure = cookies.is_secure(request.scope, self.csrf.cookie_secure)
        flashed = flash.waiting_key(request, secure=secure)
        page_context = {"user": request.user, "csrf_token": token, "errors": {}, **(context or {})}
        page_context["notice"] = page_context.get("notice") or flash.message_for(flashed)
        response = self.templates.TemplateResponse(request, name, page_context, status_code=status_code)
        if token.new_cookie is not None:
            cookies.set_csrf_cookie(response, token.new_cookie, secure=secure)
        if flashed is not None:
            flash.clear(response, secure=secure)
        _compress_for(request, response)
        return response


class _FormToken:
    """A page's CSRF token, made when the template first writes it: a page without a form (an
    error page, say) sets no CSRF cookie and spends no HMAC."""

    __slots__ = ("_csrf", "_request", "_value", "new_cookie")

    def __init__(self, csrf: Csrf, request: Request):
        self._csrf, self._request = csrf, request
        self._value: str | None = None
        self.new_cookie: str | None = None

    def __str__(self) -> str:
        if self._value is None:
            self._value, self.new_cookie = self._csrf.token_for(self._request)
        return self._value

    __html__ = __str__  # URL-safe characters only: nothing to escape


def _compress_for(request: Request, response: Response) -> None:
    """Gzip a rendered page for a browser that accepts it (authsite/compression.py says why it is safe)."""
    response.headers["vary"] = "accept-encoding"
    if compression.worth_compressing(response.body) and compression.accepts_gzip(request.headers.get("accept-encoding")):
        response.body = compression.compress(response.body)
        response.headers["content-encoding"] = "gzip"
        response.headers["content-length"] = str(len(response.body))


def _when(moment) -> str:
    return f"{moment:%Y-%m-%d %H:%M} UTC" if moment else "never"
