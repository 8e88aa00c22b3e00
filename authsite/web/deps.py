"""Request-level dependencies shared by authsite's routers."""

from collections.abc import Awaitable, Callable

from fastapi import Request

from authsite.csrf import Csrf, CsrfFailed, is_cross_site
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
