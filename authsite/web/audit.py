"""Recording an audit event with the request's IP and user agent."""

from fastapi import Request

from authsite.events import Kind
from authsite.web.inputs import client_ip


async def audit(site, request: Request, kind: Kind, **fields) -> None:
    await site.audit.record(kind, ip=client_ip(request), user_agent=request.headers.get("user-agent"), **fields)
