"""The input rules every form, API call and command applies (CONTRACT.md, "Rules every input meets")."""

import re
import unicodedata

from authsite.passwords import MAX_PASSWORD_CHARS

MIN_PASSWORD_CHARS = 8
MIN_USERNAME_CHARS = 3
MAX_USERNAME_CHARS = 32
USERNAME_PATTERN = re.compile(r"[\w.-]+")


def username_key(username: str) -> str:
    """The form usernames are compared and stored unique in: NFKC, case-folded, NFKC again."""
    return unicodedata.normalize("NFKC", unicodedata.normalize("NFKC", username).casefold())


def username_problem(username: str) -> str | None:
    """Why a new username is refused, or None when it is fine."""
    name = unicodedata.normalize("NFKC", username)
    if not MIN_USERNAME_CHARS <= len(name) <= MAX_USERNAME_CHARS:
        return f"Use {MIN_USERNAME_CHARS} to {MAX_USERNAME_CHARS} characters."
    # \w admits letters and digits of any script but also "_" and marks; we
    # refuse anything outside letters, digits, ".", "_", "-" explicitly.
    if not USERNAME_PATTERN.fullmatch(name) or not all(_is_username_char(c) for c in name):
        return "Use only letters, digits, '.', '_' and '-'."
    return None


def password_problem(password: str) -> str | None:
    """Why a new password is refused, or None when it is fine."""
    if len(password) < MIN_PASSWORD_CHARS:
        return f"Use at least {MIN_PASSWORD_CHARS} characters."
    if len(password) > MAX_PASSWORD_CHARS:
        return f"Use at most {MAX_PASSWORD_CHARS} characters."
    try:
        password.encode("utf-8")
    except UnicodeEncodeError:
        return "The password contains characters that cannot be stored."
    return None


def is_plausible_username(username: str) -> bool:
    """Cheap filter before any lookup: overlong, control or unstorable characters
    cannot be in an account name (and Postgres refuses NUL outright)."""
    if not 0 < len(username) <= MAX_USERNAME_CHARS * 4:
        return False
    return not any(unicodedata.category(c) in ("Cc", "Cs") for c in username)


def _is_username_char(char: str) -> bool:
    return char in "._-" or unicodedata.category(char)[0] in "LN"
