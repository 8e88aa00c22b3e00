"""Outgoing mail: over SMTP when AUTHSITE_SMTP_URL is set, off the request path so a slow or
dead mail server never delays or breaks a page; otherwise to a private outbox folder."""

import asyncio
import email
import email.policy
import logging
import re
import threading
from contextlib import contextmanager

import pytest
from aiosmtpd.controller import Controller
from fastapi.testclient import TestClient
from pydantic import ValidationError

from authsite import Settings, accounts, create_app
from authsite.cli import describe_settings_error
from support import PASSWORD, form_token, free_port

ALICE_EMAIL = "alice@example.com"
SENDER = "site@example.com"
PUBLIC_URL = "https://auth.example.com"
LINK = re.compile(re.escape(PUBLIC_URL) + r"/auth/reset/[A-Za-z0-9_-]{22,}")
WAIT_SECONDS = 10  # an upper bound for a handshake on loopback, never a timing assertion


class CollectingHandler:
    """An SMTP server's DATA handler that keeps every envelope; with `gate` set it
    answers DATA only once the gate opens, like a slow mail server."""

    def __init__(self, gate: threading.Event | None = None):
        self.gate = gate
        self.envelopes = []
        self.data_started = threading.Event()

    async def handle_DATA(self, server, session, envelope):
        self.data_started.set()
        if self.gate is not None:
            await asyncio.get_running_loop().run_in_executor(None, self.gate.wait, WAIT_SECONDS)
        self.envelopes.append(envelope)
        return "250 Message accepted for delivery"


@contextmanager
def smtp_server(handler: CollectingHandler):
    controller = Controller(handler, hostname="127.0.0.1", port=free_port())
    controller.start()
    try:
        yield controller
    finally:
        if handler.gate is not None:
            handler.gate.set()  # never leave the server's worker waiting
        controller.stop()


def smtp_url(port: int) -> str:
    return f"smtp://127.0.0.1:{port}?from={SENDER}"


@contextmanager
def running_site(settings):
    """The site on `settings`, with alice (who has an email address) in it."""
    app = create_app(settings)
    with TestClient(app, base_url="http://testserver", follow_redirects=False) as client:
        site = app.state.authsite

        async def create_alice():
            async with site.database.sessionmaker() as db:
                await accounts.create_user(
                    db=db, hasher=site.hasher, username="alice", password=PASSWORD, email=ALICE_EMAIL
                )

        client.portal.call(create_alice)
        yield client, site


def ask_for_link(client, login="alice"):
    return client.post("/auth/reset", data={"login": login, "csrf_token": form_token(client, "/auth/reset")})


def wait_until_sent(client, site) -> None:
    client.portal.call(site.mailer.wait_until_sent)


def outbox(settings):
    return sorted((settings.data_dir / "outbox").glob("*"))


# Over SMTP


def test_a_reset_request_delivers_one_plain_text_mail_over_smtp(make_settings):
    handler = CollectingHandler()
    with smtp_server(handler) as server:
        settings = make_settings(smtp_url=smtp_url(server.port), base_url=PUBLIC_URL)
        with running_site(settings) as (client, site):
            assert ask_for_link(client).status_code == 200
            wait_until_sent(client, site)

    assert len(handler.envelopes) == 1
    envelope = handler.envelopes[0]
    assert envelope.mail_from == SENDER
    assert envelope.rcpt_tos == [ALICE_EMAIL]
    mail = email.message_from_bytes(envelope.original_content, policy=email.policy.default)
    assert mail["To"] == ALICE_EMAIL
    assert "reset" in mail["Subject"].lower() and "password" in mail["Subject"].lower()
    assert mail.get_content_type() == "multipart/alternative"
    text = mail.get_body(("plain",)).get_content()
    assert LINK.search(text), text
    assert outbox(settings) == []


def test_a_slow_mail_server_does_not_delay_the_answer(make_settings):
    gate = threading.Event()
    handler = CollectingHandler(gate)
    with smtp_server(handler) as server:
        settings = make_settings(smtp_url=smtp_url(server.port), base_url=PUBLIC_URL)
        with running_site(settings) as (client, site):
            response = ask_for_link(client)

            # The page is here while the mail server still sits on the message.
            assert response.status_code == 200
            assert "Check your mail" in response.text
            assert handler.envelopes == []
            assert handler.data_started.wait(WAIT_SECONDS), "the mail never reached the server"
            assert handler.envelopes == []

            gate.set()
            wait_until_sent(client, site)
            assert len(handler.envelopes) == 1
            assert handler.envelopes[0].rcpt_tos == [ALICE_EMAIL]


def test_an_unreachable_mail_server_is_logged_and_the_page_still_answers(make_settings, caplog):
    closed_port = free_port()  # nothing listens there once the probe socket is closed
    settings = make_settings(smtp_url=smtp_url(closed_port))
    with running_site(settings) as (client, site):
        with caplog.at_level(logging.INFO, logger="authsite.mail"):
            response = ask_for_link(client)
            wait_until_sent(client, site)

        assert response.status_code == 200
        assert "Check your mail" in response.text
        failures = [r for r in caplog.records if r.name == "authsite.mail" and r.levelno >= logging.ERROR]
        assert len(failures) == 1, caplog.records
        assert ALICE_EMAIL in failures[0].getMessage()
        # The site carries on: the next request for a link answers the same.
        assert ask_for_link(client).status_code == 200
        wait_until_sent(client, site)


# Without SMTP: the outbox


def test_outbox_files_are_readable_by_the_site_only(make_settings):
    settings = make_settings()
    with running_site(settings) as (client, site):
        ask_for_link(client)
        ask_for_link(client)
        wait_until_sent(client, site)

    files = outbox(settings)
    assert len(files) == 2
    assert all(path.suffix == ".eml" for path in files), files
    assert all(path.stat().st_mode & 0o777 == 0o600 for path in files)


def test_a_link_asked_for_just_before_the_site_stops_is_still_mailed(make_settings):
    settings = make_settings(base_url=PUBLIC_URL)
    with running_site(settings) as (client, site):
        assert ask_for_link(client).status_code == 200
        # No waiting: the site stops at once, with the mail still to be made and written.

    [path] = outbox(settings)
    assert LINK.search(path.read_text())


def test_without_smtp_the_log_says_where_the_mail_went(make_settings, caplog):
    settings = make_settings()
    with running_site(settings) as (client, site):
        with caplog.at_level(logging.INFO, logger="authsite.mail"):
            ask_for_link(client)
            wait_until_sent(client, site)

    [path] = outbox(settings)
    messages = [r.getMessage() for r in caplog.records if r.name == "authsite.mail"]
    assert any(str(path) in message and ALICE_EMAIL in message for message in messages), messages


# Settings


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("AUTHSITE_SMTP_URL", "http://x"),
        ("AUTHSITE_SMTP_URL", "smtp://"),
        ("AUTHSITE_BASE_URL", "ftp://x"),
        ("AUTHSITE_BASE_URL", "example.com"),
    ],
)
def test_an_invalid_mail_setting_is_refused_naming_the_variable(monkeypatch, variable, value):
    monkeypatch.setenv(variable, value)

    with pytest.raises(ValidationError) as refused:
        Settings(_env_file=None)

    assert variable in describe_settings_error(refused.value)


@pytest.mark.parametrize(
    "value", ["smtp://mail.example.com", "smtp://user:secret@mail.example.com:587", "smtps://mail.example.com:465"]
)
def test_valid_smtp_urls_are_accepted(monkeypatch, value):
    monkeypatch.setenv("AUTHSITE_SMTP_URL", value)

    assert Settings(_env_file=None).smtp_url == value


def test_links_use_the_base_url_without_a_trailing_slash(monkeypatch):
    monkeypatch.setenv("AUTHSITE_BASE_URL", "https://example.com/")

    assert Settings(_env_file=None).public_url == "https://example.com"
