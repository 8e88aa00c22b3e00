import json
import pytest
from test_passkeys import BASE_URL, add_passkey, options, another_browser, rows, settings, device, alice_with_passkey, browser  # noqa
from soft_passkey import SoftPasskey
from support import PASSWORD, csrf_from, log_in


def test_probe_surrogate_api(alice_with_passkey):
    options(alice_with_passkey)
    r = alice_with_passkey.post("/api/auth/passkey", content=b'{"credential": {"id": "\\ud800"}}',
                                headers={"content-type": "application/json"})
    print(r.status_code, r.text[:300], r.request.url)


def test_probe_surrogate_form(alice_with_passkey):
    page = alice_with_passkey.get("/auth/login").text
    options(alice_with_passkey)
    r = alice_with_passkey.post("/auth/passkey", data={"csrf_token": csrf_from(page), "credential": '{"id": "\\ud800"}'})
    print(r.status_code, r.text[:300], r.request.url)


def test_probe_surrogate_mfa(alice_with_passkey):
    log_in(alice_with_passkey)
    options(alice_with_passkey)
    r = alice_with_passkey.post("/api/auth/mfa", content=b'{"credential": {"id": "\\ud800"}}',
                                headers={"content-type": "application/json"})
    print(r.status_code, r.text[:300], r.request.url)


def test_probe_api_plain(alice_with_passkey):
    options(alice_with_passkey)
    r = alice_with_passkey.post("/api/auth/passkey", json={"credential": {"id": "abc"}})
    print(r.status_code, r.text[:300], r.request.url)
    r = alice_with_passkey.post("/api/auth/passkey", content=b'{"credential": {"id": "abc"}}', headers={"content-type": "application/json"})
    print(r.status_code, r.text[:300], r.request.url)
