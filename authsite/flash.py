"""Flash messages: a one-time notice carried across a redirect ("You are logged out.").

The redirect sets a short-lived cookie holding a KEY from MESSAGES below; the next
HTML page looks the key up, shows the text in its notice area and deletes the cookie,
so a reload shows nothing. Keys, never text: a cookie is visitor-controlled, so text
taken from it could put any words on our pages (a phishing line under our name); a
key from a fixed list can only select one of our own sentences, needs no signature,
and an unknown or forged key is simply ignored.
"""

from starlette.requests import HTTPConnection
from starlette.responses import RedirectResponse, Response

from authsite import cookies

# Long enough for the browser to follow the redirect, short enough that a
# notice never greets someone who comes back later.
FLASH_MAX_AGE_SECONDS = 60

MESSAGES = {
    "logged_out": "You are logged out.",
    "password_changed": "Password changed. Every other device has been logged out.",
    "password_reset": "Your password has been reset. Log in with the new one.",
    "profile_saved": "Your details have been saved.",
    "session_revoked": "That session has ended.",
    "others_revoked": "Every other session has ended.",
    "user_saved": "Changes saved.",
    "user_sessions_revoked": "Every session of this user has ended.",
    "mfa_required": "Your permissions need a second factor: set up an authenticator app or add a passkey to go on.",
    "totp_disabled": "The authenticator app is off.",
    "login_expired": "That login is no longer waiting for a code (it took over five minutes, or was finished). Log in again.",
    "too_many_codes": "Too many wrong codes. Log in again.",
    "recovery_code_used": "You used a recovery code; it will not work again. Check how many you have left on your security page.",
    "mfa_reset": "Every second factor of this user has been removed and their sessions have ended.",
    "setup_expired": "That setup is too old or was started elsewhere. Here is a new one.",
    "email_confirmed": "Your email address is confirmed. Thank you.",
    "email_changed": "Your new email address is confirmed and in use.",
    "email_change_requested": "We sent a link to the new address: your email changes when you open it (within 24 hours).",
    "email_change_cancelled": "Done: the change is undone, every device is logged out and the old password no longer works. Ask for a reset link below to set a new one.",
    "email_marked_confirmed": "The address is marked as confirmed.",
    "code_expired": "That sign-in code is no longer waiting (it lasts 10 minutes, and works once). Ask for a new one.",
    "address_proved_by_code": "Your address is confirmed. It had never been before, so the password, second factors and sessions set up until now were turned off: use 'Forgot your password?' to set a new password.",
    "verify_sent": "We sent a new confirmation link to your address.",
    "passkey_added": "Your passkey is added. You can sign in with it, or use it after your password.",
    "passkey_removed": "The passkey is removed and can no longer sign in.",
    "first_admin": "Your account is made: the site's first, with every permission. The setup link no longer works.",
}


def flash(response: Response, key: str, *, secure: bool) -> None:
    """Leave the message `key` for the next page this browser renders."""
    if key not in MESSAGES:
        raise ValueError(f"unknown flash message {key!r}")
    cookies.set_flash_cookie(response, key, secure=secure, max_age=FLASH_MAX_AGE_SECONDS)


def redirect_with_flash(url: str, key: str, *, conn: HTTPConnection, cookie_secure: str) -> RedirectResponse:
    """A `303` to `url` whose page will show the message `key` once."""
    response = RedirectResponse(url, status_code=303)
    flash(response, key, secure=cookies.is_secure(conn.scope, cookie_secure))
    return response


def waiting_key(conn: HTTPConnection, *, secure: bool) -> str | None:
    """The flash cookie's value, if this visitor has one: a known key or anything at all."""
    return conn.cookies.get(cookies.flash_cookie_name(secure))


def message_for(key: str | None) -> str | None:
    """The text of a known key; None for no key or one we never issued."""
    return MESSAGES.get(key) if key else None


def clear(response: Response, *, secure: bool) -> None:
    """Delete the flash cookie with the page that showed it, so a reload shows nothing."""
    cookies.clear_flash_cookie(response, secure=secure)
