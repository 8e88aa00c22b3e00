"""How `run.py` serves: uvicorn with a deadline for every request's head and body, a cap on open
connections below the file limit, a log that stays quiet when either bites, workers given time to
start, and a warning when a proxy's X-Forwarded-For is not believed."""

import asyncio
import functools
import ipaddress
import logging
import resource
import time
from dataclasses import dataclass

from starlette.requests import ClientDisconnect
from uvicorn.loops.auto import auto_loop_factory
from uvicorn.protocols.http.auto import AutoHTTPProtocol

logger = logging.getLogger("authsite.serving")

# Slow clients (slowloris) hold a socket, and with it a file descriptor, for as long as we wait:
# a request's head must be complete this long after the connection opens, or after the first byte
# of a later keep-alive request (a byte a second does not restart the clock).
HEAD_TIMEOUT_SECONDS = 5
# From a complete head to the body's last byte; our bodies are at most 64 KiB (body_limit.py).
BODY_TIMEOUT_SECONDS = 10
# The kernel's queue of connections not yet accepted, and how many asyncio accepts in one go:
# that many descriptors can open at once before the cap below sees them.
ACCEPT_BACKLOG = 256
# Descriptors kept free for the database's connections, SQLite's files, logs and the loop's own.
FD_RESERVE = 128
# A refused connection stays open this long so the client reads its 503 (closing a socket with
# unread input sends a reset that can destroy the answer); at most this many at a time.
REFUSED_LINGER_SECONDS = 1
REFUSED_LINGER_MAX = 64
# Connections one process keeps open at most, however high the file limit (memory).
MAX_CONNECTIONS = 8192
# Under attack the log says what is happening once per interval, not once per connection.
QUIET_INTERVAL_SECONDS = 60
# uvicorn kills a worker that does not answer its supervisor's ping in time (5 s by default); a
# replacement starting on a loaded machine needed longer than that before its first answer. Longer
# is not free: a worker that dies while a ping is out is noticed only when the ping times out.
WORKER_HEALTHCHECK_SECONDS = 30
RETRY_AFTER_SECONDS = 5

BUSY_BODY = b"The server is busy; try again in a few seconds.\n"
BUSY_RESPONSE = (
    b"HTTP/1.1 503 Service Unavailable\r\n"
    b"content-type: text/plain; charset=utf-8\r\n"
    b"content-length: %d\r\n"
    b"retry-after: %d\r\n"
    b"connection: close\r\n\r\n%s" % (len(BUSY_BODY), RETRY_AFTER_SECONDS, BUSY_BODY)
)


@dataclass(frozen=True)
class Limits:
    file_limit: int
    backlog: int
    max_connections: int


def limits_for(file_limit: int) -> Limits:
    """The accept backlog and the open-connection cap that keep accept() clear of EMFILE."""
    backlog = max(16, min(ACCEPT_BACKLOG, file_limit // 8))
    room = file_limit - FD_RESERVE - backlog - REFUSED_LINGER_MAX
    return Limits(file_limit, backlog, max(16, min(MAX_CONNECTIONS, room)))


def raise_file_limit() -> int:
    """Raise this process's soft RLIMIT_NOFILE to its hard limit (workers inherit it); the new soft limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = hard if hard != resource.RLIM_INFINITY else max(soft, 1 << 16)
    if soft != resource.RLIM_INFINITY and soft < wanted:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
            soft = wanted
        except (ValueError, OSError):
            pass
    return soft


@functools.cache
def process_limits() -> Limits:
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    return limits_for(soft if soft != resource.RLIM_INFINITY else 1 << 16)


def uvicorn_options(settings, *, workers: int) -> dict:
    """uvicorn.run's arguments for serving the site with the guards of this module."""
    limits = limits_for(raise_file_limit())
    return {
        "app": "authsite.serving:create_served_app",
        "factory": True,
        "host": settings.host,
        "port": settings.port,
        "workers": workers,
        "http": "authsite.serving:GuardedHTTPProtocol",
        "loop": "authsite.serving:new_event_loop",
        "backlog": limits.backlog,
        # create_served_app applies X-Forwarded-* itself, inside the untrusted-proxy warning.
        "proxy_headers": False,
        "timeout_worker_healthcheck": WORKER_HEALTHCHECK_SECONDS,
        "server_header": False,
    }


class QuietWarning:
    """A warning logged for the first event, then at most once per interval with the count since."""

    def __init__(self, message: str, interval: float = QUIET_INTERVAL_SECONDS):
        self.message = message
        self.interval = interval
        self.count = 0
        self.next_line_at = 0.0

    def note(self) -> None:
        self.count += 1
        now = time.monotonic()
        if now >= self.next_line_at:
            logger.warning(self.message, self.count)
            self.count, self.next_line_at = 0, now + self.interval


REFUSALS = QuietWarning(
    "Refused %d connection(s) with 503: this process has its cap of open connections "
    "(slow or idle clients are closed after " + str(HEAD_TIMEOUT_SECONDS) + " s)"
)
ACCEPT_FAILURES = QuietWarning("accept() failed %d time(s): out of file descriptors or memory; retrying")
_lingering: set["GuardedHTTPProtocol"] = set()


class GuardedHTTPProtocol(AutoHTTPProtocol):
    """uvicorn's HTTP/1.1 protocol (httptools when installed, else h11) with deadlines for a
    request's head and body and an open-connection cap answered by a raw 503."""

    _refused = False
    _deadline: asyncio.TimerHandle | None = None
    _timed_cycle: object = None  # the request whose body is awaited, or the one before the awaited head
    _awaiting_body = False

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        # The cap is checked before anything is read, so a flood costs one write and a close.
        if len(self.server_state.connections) >= process_limits().max_connections:
            self._refuse(transport)
            return
        super().connection_made(transport)
        self._wait(HEAD_TIMEOUT_SECONDS)

    def data_received(self, data: bytes) -> None:
        if self._refused:
            return
        if self._deadline is None and (self.cycle is None or self.cycle.response_complete):
            self._wait(HEAD_TIMEOUT_SECONDS)  # the first byte of a keep-alive request
        super().data_received(data)
        if self._deadline is not None:
            self._note_progress()

    def _note_progress(self) -> None:
        cycle = self.cycle
        if cycle is not self._timed_cycle:  # a new request's head is complete
            if cycle.more_body:
                self._wait(BODY_TIMEOUT_SECONDS, for_body=True)
            else:
                self._stop_waiting()
        elif self._awaiting_body and not cycle.more_body:
            self._stop_waiting()

    def eof_received(self) -> bool | None:
        return False if self._refused else super().eof_received()

    def connection_lost(self, exc: Exception | None) -> None:
        self._stop_waiting()
        if self._refused:
            _lingering.discard(self)
            return
        super().connection_lost(exc)

    def _wait(self, seconds: float, *, for_body: bool = False) -> None:
        self._stop_waiting()
        self._timed_cycle, self._awaiting_body = self.cycle, for_body
        self._deadline = self.loop.call_later(seconds, self._overdue)

    def _stop_waiting(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _overdue(self) -> None:
        self._deadline = None
        if not self.transport.is_closing():
            self.transport.close()

    def _refuse(self, transport: asyncio.Transport) -> None:
        self._refused, self.transport = True, transport
        REFUSALS.note()
        transport.write(BUSY_RESPONSE)
        if len(_lingering) < REFUSED_LINGER_MAX and transport.can_write_eof():
            transport.write_eof()
            _lingering.add(self)
            self._deadline = self.loop.call_later(REFUSED_LINGER_SECONDS, transport.close)
        else:
            transport.close()


def new_event_loop() -> asyncio.AbstractEventLoop:
    """uvicorn's usual event loop, with accept()'s out-of-resource errors logged quietly."""
    loop = auto_loop_factory()()
    loop.set_exception_handler(_quiet_accept_errors)
    return loop


def _quiet_accept_errors(loop: asyncio.AbstractEventLoop, context: dict) -> None:
    # asyncio reports each failed accept() with a traceback, up to the backlog's length per
    # wake-up and again every second: under EMFILE that is megabytes of log a second.
    if context.get("message") == "socket.accept() out of system resource":
        ACCEPT_FAILURES.note()
        return
    loop.default_exception_handler(context)


def create_served_app():
    """The app `run.py` serves: the standalone site behind X-Forwarded-* handling and its warning."""
    from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware

    from authsite.app import create_app
    from authsite.config import Settings

    settings = Settings()
    app = QuietDisconnects(create_app(settings))
    trusted = settings.forwarded_allow_ips.strip()
    if trusted:
        # X-Forwarded-For/-Proto are believed only from these proxies; with none set, a
        # client's own headers change nothing.
        app = ProxyHeadersMiddleware(app, trusted_hosts=trusted)
    if "*" in (item.strip() for item in trusted.split(",")):
        return app  # every peer is trusted: nothing to warn about
    return UntrustedProxyWarning(app, trusted)


class QuietDisconnects:
    """Pure ASGI: a client that leaves (or is closed) while its body is read ends its request
    without a traceback; one per slow body would let a client fill the log."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send) -> None:
        try:
            await self.app(scope, receive, send)
        except ClientDisconnect:
            pass  # nobody is left to answer


class UntrustedProxyWarning:
    """Pure ASGI: warns once when a loopback or private peer sends X-Forwarded-For that
    AUTHSITE_FORWARDED_ALLOW_IPS does not cover. Such a peer is most likely a proxy, and then every
    client shares its address, and so its login limits: ten wrong guesses lock everyone out."""

    def __init__(self, app, forwarded_allow_ips: str):
        self.app = app
        self.trusted = [ipaddress.ip_network(item.strip(), strict=False)
                        for item in forwarded_allow_ips.split(",") if item.strip()]
        self._handle = self._check

    async def __call__(self, scope, receive, send) -> None:
        await self._handle(scope, receive, send)

    async def _check(self, scope, receive, send) -> None:
        if scope["type"] == "http" and b"x-forwarded-for" in dict(scope["headers"]):
            peer = (scope.get("client") or ("",))[0]
            if self._is_untrusted_proxy(peer):
                self._warn(peer)
                self._handle = self.app  # once said, the check costs nothing
        await self.app(scope, receive, send)

    @functools.lru_cache(maxsize=256)
    def _is_untrusted_proxy(self, peer: str) -> bool:
        try:
            address = ipaddress.ip_address(peer)
        except ValueError:
            return False
        if getattr(address, "ipv4_mapped", None):
            address = address.ipv4_mapped
        if not (address.is_loopback or address.is_private):
            return False
        return not any(address in network for network in self.trusted)

    def _warn(self, peer: str) -> None:
        logger.warning(
            "Requests from %s carry X-Forwarded-For, but AUTHSITE_FORWARDED_ALLOW_IPS does not trust "
            "that address, so every client behind it shares it and its login limits; if %s is your "
            "proxy, set AUTHSITE_FORWARDED_ALLOW_IPS=%s",
            peer, peer, peer,
        )
