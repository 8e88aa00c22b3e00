"""Recording an audit event, and mailing a security notice, with the request's IP and user agent."""

from fastapi import Request

from authsite.events import Kind
from authsite.notices import Notice, Where
from authsite.web.inputs import client_ip


async def audit(site, request: Request, kind: Kind, **fields) -> None:
    await site.audit.record(kind, ip=client_ip(request), user_agent=request.headers.get("user-agent"), **fields)


def where(request: Request) -> Where:
    return Where(ip=client_ip(request), user_agent=request.headers.get("user-agent"))


def notify(site, request: Request, notice: Notice, *, user=None, to: str | None = None, **details: str) -> None:
    """Mail `notice` to the account (`user`, else the logged-in one) at its address (or `to`), if any."""
    account = user if user is not None else request.user
    site.notices.send(notice, to=to or account.email, username=account.username, where=where(request), **details)
