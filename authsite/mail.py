"""Outgoing mail, made and sent by a background worker so neither a slow mail server nor the
work of making a mail (finding its account, minting its link) shows in a page's answer time.

With AUTHSITE_SMTP_URL set, mail goes over SMTP (implicit TLS for smtps://,
STARTTLS for smtp://). Without it, each message is written to <DATA_DIR>/outbox/
as an .eml file and noted in the log, so a site without mail still works."""

import asyncio
import contextlib
import html
import ipaddress
import logging
import os
import re
import secrets
import smtplib
import ssl
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit

from authsite.files import PRIVATE_FILE_MODE, make_private_dir
from authsite.models import utcnow

log = logging.getLogger("authsite.mail")

SMTP_TIMEOUT_SECONDS = 20
DEFAULT_PORTS = {"smtp": 587, "smtps": 465}
# Mails (or mails to make) waiting at most; past it a request waits for room rather than
# letting a flood of them grow without end.
MAX_QUEUED = 1000
# At stop, queued work gets this long to finish before it is dropped.
DRAIN_SECONDS = 5


@dataclass(frozen=True)
class Mail:
    to: str
    subject: str
    body: str


# Makes a mail in the background, or decides there is none to send.
Compose = Callable[[], Awaitable[Mail | None]]


class Mailer:
    def __init__(self, *, smtp_url: str | None, outbox_dir: Path):
        self.smtp_url = smtp_url
        self.outbox_dir = outbox_dir
        self._queue: asyncio.Queue[Mail | Compose] | None = None
        self._worker: asyncio.Task | None = None

    async def start(self) -> None:
        self._queue = asyncio.Queue(maxsize=MAX_QUEUED)
        self._worker = asyncio.create_task(self._deliver_forever())

    async def stop(self) -> None:
        if self._worker:
            try:
                await asyncio.wait_for(self._queue.join(), DRAIN_SECONDS)
            except TimeoutError:
                log.warning("stopping with %d mail(s) not yet sent", self._queue.qsize())
            self._worker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._worker

    def send_later(self, mail: Mail) -> None:
        """Queue `mail`; returns at once."""
        try:
            self._queue.put_nowait(mail)
        except asyncio.QueueFull:
            log.error("mail queue full: dropped mail %r to %s", mail.subject, mail.to)

    async def compose_later(self, compose: Compose) -> None:
        """Queue `compose()`, which the worker runs and then sends the mail it makes, if any.
        Returns at once (unless the queue is full), so an answer that must not tell whether
        there is a mail to send waits the same either way."""
        await self._queue.put(compose)

    async def wait_until_sent(self) -> None:
        """Until everything queued so far has been delivered or given up on."""
        await self._queue.join()

    async def _deliver_forever(self) -> None:
        while True:
            item = await self._queue.get()
            try:
                await self._make_and_deliver(item)
            finally:
                self._queue.task_done()

    async def _make_and_deliver(self, item: Mail | Compose) -> None:
        if isinstance(item, Mail):
            mail = item
        else:
            try:
                mail = await item()
            except Exception as exc:  # nor may a failure to make one (the database down, say)
                # The type only: a database error's text holds its statement's parameters.
                log.error("could not make a mail (%s)", type(exc).__name__)
                return
        if mail is None:
            return
        try:
            await asyncio.to_thread(self._deliver, mail)
        except Exception as exc:  # a mail failure must never take the site down
            log.error("could not send mail %r to %s: %s", mail.subject, mail.to, exc)

    def _deliver(self, mail: Mail) -> None:
        if self.smtp_url:
            send_smtp(self.smtp_url, mail)
            log.info("sent mail %r to %s", mail.subject, mail.to)
        else:
            path = write_to_outbox(self.outbox_dir, mail)
            log.info("mail %r to %s written to %s (no AUTHSITE_SMTP_URL set)", mail.subject, mail.to, path)


def build_message(mail: Mail, sender: str) -> EmailMessage:
    message = EmailMessage()
    message["From"] = sender
    message["To"] = mail.to
    message["Subject"] = mail.subject
    message["Date"] = formatdate(localtime=False)
    message["Message-ID"] = make_msgid(domain=sender.rpartition("@")[2] or None)
    message.set_content(mail.body)
    # The same words as simple HTML, for mail programs that prefer it: no images, no styles from
    # elsewhere, no tracking; the links are the plain text's own.
    message.add_alternative(as_html(mail.body, title=mail.subject), subtype="html")
    return message


_URL = re.compile(r"https?://[^\s<>\"']+")


def as_html(text: str, *, title: str) -> str:
    """Plain text as HTML: paragraphs at blank lines, line breaks kept, addresses made links."""
    paragraphs = []
    for paragraph in text.strip().split("\n\n"):
        escaped = html.escape(paragraph, quote=True)
        linked = _URL.sub(lambda match: f'<a href="{match.group(0)}">{match.group(0)}</a>', escaped)
        paragraphs.append("<p>" + linked.replace("\n", "<br>\n") + "</p>")
    return (
        '<!doctype html>\n<html><head><meta charset="utf-8"><title>' + html.escape(title) + "</title></head>\n"
        '<body style="font-family: sans-serif; line-height: 1.5; max-width: 40em">\n'
        + "\n".join(paragraphs) + "\n</body></html>\n"
    )


def write_to_outbox(outbox_dir: Path, mail: Mail) -> Path:
    # Reset links are secrets: the outbox and its files are the site user's alone.
    make_private_dir(outbox_dir)
    name = f"{utcnow():%Y%m%dT%H%M%S}-{secrets.token_hex(4)}.eml"
    path = outbox_dir / name
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, PRIVATE_FILE_MODE)
    with os.fdopen(fd, "wb") as f:
        f.write(build_message(mail, "authsite@localhost").as_bytes())
    tmp.rename(path)  # readers of the outbox never see a half-written mail
    return path


def send_smtp(url: str, mail: Mail) -> None:
    parts = urlsplit(url)
    host, port = parts.hostname, parts.port or DEFAULT_PORTS[parts.scheme]
    sender = parse_qs(parts.query).get("from", [f"noreply@{host}"])[0]
    message = build_message(mail, sender)
    context = ssl.create_default_context()
    if parts.scheme == "smtps":
        client = smtplib.SMTP_SSL(host, port, timeout=SMTP_TIMEOUT_SECONDS, context=context)
    else:
        client = smtplib.SMTP(host, port, timeout=SMTP_TIMEOUT_SECONDS)
    with client:
        client.ehlo()
        if parts.scheme == "smtp":
            if client.has_extn("starttls"):
                client.starttls(context=context)
                client.ehlo()
            elif not _is_loopback(host):
                # Never send a reset link or a password across the network in clear.
                raise smtplib.SMTPException(f"{host} does not offer STARTTLS; use smtps:// or a server that does")
        if parts.username:
            client.login(unquote(parts.username), unquote(parts.password or ""))
        client.send_message(message)


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
