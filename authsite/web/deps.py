"""Request-level dependencies shared by authsite's routers."""

from collections.abc import Awaitable, Callable
from functools import partial

from fastapi import Depends, Request

from authsite import sessions
from authsite.csrf import Csrf, CsrfFailed, is_cross_site
from authsite.errors import NotLoggedIn, ReauthenticationRequired
from authsite.middleware import SESSION_SCOPE_KEY
from authsite.models import utcnow
from authsite.web.inputs import read_form


def checked_form(
    get_csrf: Callable[[], Csrf], repeatable: tuple[str, ...] = ()
) -> Callable[[Request], Awaitable[dict]]:
    """A dependency giving a POSTed form's fields once its origin and `csrf_token` check out."""

    async def form_from_this_site(request: Request) -> dict:
        if is_cross_site(request):
            raise CsrfFailed()
        fields = await read_form(request, repeatable)
        if not get_csrf().is_valid(request, fields.get("csrf_token")):
            raise CsrfFailed()
        return fields

    return form_from_this_site


async def same_origin_api_call(request: Request) -> None:
    """JSON calls carry no token: the JSON content type (which a cross-site form
    cannot send without a CORS preflight) and the origin check stand in for it."""
    if is_cross_site(request):
        raise CsrfFailed()


async def require_sudo(site, request: Request, *, next_path: str) -> None:
    """Sudo mode: a sensitive change needs a session that logged in or confirmed who it is within
    AUTHSITE_SUDO_SECONDS; otherwise ReauthenticationRequired (a 303 to /auth/confirm, or a 403 for
    the API), before anything changes. `next_path` is the page to come back to. The time is read
    from the session row here, not by every request's lookup: few requests are sensitive."""
    session = request.scope.get(SESSION_SCOPE_KEY)
    proved = await site.database.run(partial(sessions.proved_at, session_id=session.id)) if session else None
    if proved is None:
        # Ended since this request's lookup (logged out elsewhere, the account deactivated): not
        # a matter of confirming again, but of logging in.
        raise NotLoggedIn()
    if utcnow() - proved > site.sudo_window:
        raise ReauthenticationRequired(next_path)


def sudo_form(site, back_to: Callable[[Request], str]) -> Callable[..., Awaitable[dict]]:
    """A dependency giving a form's fields once its CSRF token checks out and the session is in
    sudo mode (`back_to(request)`: the page the confirmation returns to)."""

    async def form_in_sudo_mode(request: Request, form: dict = Depends(site.checked_form)) -> dict:
        await require_sudo(site, request, next_path=back_to(request))
        return form

    return form_in_sudo_mode
