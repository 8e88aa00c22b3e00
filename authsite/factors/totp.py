"""Authenticator apps (TOTP, RFC 6238): new secrets, the otpauth:// URI and its QR code, codes. No I/O.

pyotp computes and compares the codes (in constant time); segno draws the QR code as inline SVG,
so the setup page needs no script and no image from elsewhere (the CSP stays same-origin). Both are
imported on first use: a server whose users never set up an app does not carry them (about 8 MB
each of resident memory in every worker, bench/RESULTS.md).
"""

import re

# RFC 6238's defaults, what every authenticator app expects: HMAC-SHA-1, 6 digits, 30 s steps.
DIGITS = 6
PERIOD_SECONDS = 30
# A phone's clock a step (30 s) off either way still works; more widens what a guess can hit.
DRIFT_STEPS = 1
# 32 base32 characters: 160 bits, the key size RFC 4226 recommends for HMAC-SHA-1.
SECRET_CHARS = 32
CODE = re.compile(r"\d{%d}" % DIGITS)
SPACES = re.compile(r"[\s-]")


def new_secret() -> str:
    import pyotp

    return pyotp.random_base32(SECRET_CHARS)


def _totp(secret: str):
    import pyotp

    return pyotp.TOTP(secret, digits=DIGITS, interval=PERIOD_SECONDS)


def provisioning_uri(secret: str, *, account: str, issuer: str) -> str:
    """otpauth://totp/ISSUER:ACCOUNT?secret=...&issuer=ISSUER (the Key URI Format apps scan)."""
    return _totp(secret).provisioning_uri(name=account, issuer_name=issuer)


def qr_svg(uri: str) -> str:
    """The URI as an inline <svg> (black on white whatever the page's colours, so phones read it)."""
    import segno

    code = segno.make(uri, error="m")
    # omitsize: a viewBox instead of a fixed size, so the stylesheet sizes it whole on any screen.
    return code.svg_inline(scale=5, border=3, dark="#000", light="#fff", omitsize=True,
                           title="QR code for your authenticator app", svgclass="qr-code")


def grouped(secret: str) -> str:
    """The secret in groups of four, for typing it in by hand."""
    return " ".join(secret[i:i + 4] for i in range(0, len(secret), 4))


def normalise(code: str) -> str:
    """A typed code without the spaces or dashes people add ("123 456")."""
    return SPACES.sub("", code)[:64]


def looks_like_code(code: str) -> bool:
    return CODE.fullmatch(normalise(code)) is not None


def matching_step(secret: str, code: str, *, at: float) -> int | None:
    """The time step whose code `code` is, within the allowed drift of `at`; None if none is."""
    code = normalise(code)
    if CODE.fullmatch(code) is None:
        return None
    from pyotp.exceptions import OTPVerificationError

    try:
        return _totp(secret).verify_and_get_timecode(code, for_time=at, valid_window=DRIFT_STEPS)
    except OTPVerificationError:
        return None


def code_at(secret: str, at: float) -> str:
    """The code an app shows at `at` (for tests and the CLI's checks)."""
    return _totp(secret).at(at)
