"""The session, CSRF and flash cookies: names, flags, reading. Every cookie decision lives here."""

from starlette.responses import Response

SESSION_COOKIE = "session"
# The __Host- prefix makes browsers refuse the cookie unless it is Secure,
# has Path=/ and no Domain, so a sibling subdomain cannot plant one.
SECURE_SESSION_COOKIE = "__Host-session"
CSRF_COOKIE = "csrftoken"
SECURE_CSRF_COOKIE = "__Host-csrftoken"
# A one-time notice key for the page after a redirect (see flash.py).
FLASH_COOKIE = "flash"
SECURE_FLASH_COOKIE = "__Host-flash"
# Which accounts this browser has signed in to (see known_devices.py); long-lived on purpose.
DEVICE_COOKIE = "device"
SECURE_DEVICE_COOKIE = "__Host-device"
DEVICE_COOKIE_MAX_AGE = 365 * 24 * 3600
MAX_COOKIE_HEADER_BYTES = 8192


def is_secure(scope, setting: str) -> bool:
    """Whether cookies for this request get the Secure flag (`auto`: when it came over https)."""
    if setting == "auto":
        return scope.get("scheme") in ("https", "wss")
    return setting == "true"


def session_cookie_name(secure: bool) -> str:
    return SECURE_SESSION_COOKIE if secure else SESSION_COOKIE


def csrf_cookie_name(secure: bool) -> str:
    return SECURE_CSRF_COOKIE if secure else CSRF_COOKIE


def read_cookie(scope, name: str) -> str | None:
    """One cookie's value from the raw header; an oversized or garbled header reads as absent."""
    for key, value in scope["headers"]:
        if key == b"cookie":
            if len(value) > MAX_COOKIE_HEADER_BYTES:
                return None
            found = _find(value.decode("latin-1"), name)
            if found is not None:
                return found
    return None


def _find(header: str, name: str) -> str | None:
    for part in header.split(";"):
        key, sep, value = part.strip().partition("=")
        if sep and key == name:
            return value.strip().strip('"')
    return None


def set_session_cookie(response: Response, token: str, *, secure: bool, max_age: int | None) -> None:
    """`max_age=None` makes a browser-session cookie (no "remember me")."""
    response.set_cookie(
        session_cookie_name(secure),
        token,
        max_age=max_age,
        path="/",
        secure=secure,
        httponly=True,
        samesite="lax",
    )


def clear_session_cookie(response: Response, *, secure: bool) -> None:
    response.delete_cookie(session_cookie_name(secure), path="/", secure=secure, httponly=True, samesite="lax")


def set_csrf_cookie(response: Response, value: str, *, secure: bool) -> None:
    response.set_cookie(
        csrf_cookie_name(secure), value, path="/", secure=secure, httponly=True, samesite="lax"
    )


def clear_csrf_cookie(response: Response, *, secure: bool) -> None:
    response.delete_cookie(csrf_cookie_name(secure), path="/", secure=secure, httponly=True, samesite="lax")


def flash_cookie_name(secure: bool) -> str:
    return SECURE_FLASH_COOKIE if secure else FLASH_COOKIE


def set_flash_cookie(response: Response, key: str, *, secure: bool, max_age: int) -> None:
    response.set_cookie(
        flash_cookie_name(secure), key, max_age=max_age, path="/", secure=secure, httponly=True, samesite="lax"
    )


def clear_flash_cookie(response: Response, *, secure: bool) -> None:
    response.delete_cookie(flash_cookie_name(secure), path="/", secure=secure, httponly=True, samesite="lax")


def device_cookie_name(secure: bool) -> str:
    return SECURE_DEVICE_COOKIE if secure else DEVICE_COOKIE


def set_device_cookie(response: Response, value: str, *, secure: bool) -> None:
    response.set_cookie(
        device_cookie_name(secure), value, max_age=DEVICE_COOKIE_MAX_AGE, path="/", secure=secure, httponly=True,
        samesite="lax",
    )


# A login waiting for its second factor (authsite/second_step.py): its one-time token, for five
# minutes. SameSite=Strict: only this site's own pages ever need to send it.
PENDING_LOGIN_COOKIE = "pending_login"
SECURE_PENDING_LOGIN_COOKIE = "__Host-pending_login"


def pending_login_cookie_name(secure: bool) -> str:
    return SECURE_PENDING_LOGIN_COOKIE if secure else PENDING_LOGIN_COOKIE


def set_pending_login_cookie(response: Response, token: str, *, secure: bool, max_age: int) -> None:
    _set_step_cookie(response, pending_login_cookie_name(secure), token, secure=secure, max_age=max_age)


def clear_pending_login_cookie(response: Response, *, secure: bool) -> None:
    _clear_step_cookie(response, pending_login_cookie_name(secure), secure=secure)


# A passkey ceremony's challenge (authsite/factors/passkeys.py), sealed, for five minutes: the
# answer is checked against the challenge this browser was given, never one sent in the request.
PASSKEY_CHALLENGE_COOKIE = "passkey_challenge"
SECURE_PASSKEY_CHALLENGE_COOKIE = "__Host-passkey_challenge"


def passkey_challenge_cookie_name(secure: bool) -> str:
    return SECURE_PASSKEY_CHALLENGE_COOKIE if secure else PASSKEY_CHALLENGE_COOKIE


def set_passkey_challenge_cookie(response: Response, sealed: str, *, secure: bool, max_age: int) -> None:
    _set_step_cookie(response, passkey_challenge_cookie_name(secure), sealed, secure=secure, max_age=max_age)


def clear_passkey_challenge_cookie(response: Response, *, secure: bool) -> None:
    _clear_step_cookie(response, passkey_challenge_cookie_name(secure), secure=secure)


# A sign-in code asked for (authsite/sign_in_codes.py): the browser's own token, for ten minutes.
SIGN_IN_CODE_COOKIE = "sign_in_code"
SECURE_SIGN_IN_CODE_COOKIE = "__Host-sign_in_code"


def sign_in_code_cookie_name(secure: bool) -> str:
    return SECURE_SIGN_IN_CODE_COOKIE if secure else SIGN_IN_CODE_COOKIE


def set_sign_in_code_cookie(response: Response, token: str, *, secure: bool, max_age: int) -> None:
    _set_step_cookie(response, sign_in_code_cookie_name(secure), token, secure=secure, max_age=max_age)


def clear_sign_in_code_cookie(response: Response, *, secure: bool) -> None:
    _clear_step_cookie(response, sign_in_code_cookie_name(secure), secure=secure)


# The cookies of a step half-way through (a pending login, a passkey challenge): HttpOnly, for the
# whole site, only ever sent by the site's own pages (SameSite=Strict), for a few minutes.
def _set_step_cookie(response: Response, name: str, value: str, *, secure: bool, max_age: int) -> None:
    response.set_cookie(name, value, max_age=max_age, path="/", secure=secure, httponly=True, samesite="strict")


def _clear_step_cookie(response: Response, name: str, *, secure: bool) -> None:
    response.delete_cookie(name, path="/", secure=secure, httponly=True, samesite="strict")
